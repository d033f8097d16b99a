"""Training entry point for the high-level decoder: samples (see processing_high_level) -> checkpoint."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

from torch.utils.data import Dataset

from ...checkpoint import save_checkpoint
from ...training import TrainConfig, TrainResult, train
from .configuration_high_level import HighLevelConfig
from .modeling_high_level import HighLevelModel
from .policy import HighLevelPolicy
from .processing_high_level import HighLevelProcessor


def train_high_level(dataset: Dataset, config: HighLevelConfig, out_dir: str | Path | None, steps: int, *,
                     processor: HighLevelProcessor | None = None, corpus: Iterable[str] = (),
                     camera_names: tuple[str, ...] = ('front', 'wrist'), train_config: TrainConfig | None = None,
                     resume_from: str | Path | None = None, embodiment: str | None = None,
                     **train_overrides) -> tuple[HighLevelPolicy, TrainResult]:
    """The tokenizer is trained on the dataset's texts + `corpus` (unless a processor is given)."""
    if processor is None:
        processor = HighLevelProcessor.build(config, [dataset[i] for i in range(len(dataset))], corpus, camera_names)
    model = HighLevelModel(config)
    cfg = replace(train_config or TrainConfig(), steps=steps, **train_overrides)

    def save_model(m: HighLevelModel, directory: Path) -> None:
        save_checkpoint(directory, m, m.config, extra_files=processor.to_files(), embodiment=embodiment)

    result = train(model, dataset, cfg, out_dir, collate_fn=processor.collate, save_model=save_model,
                   resume_from=resume_from, title='high_level')
    return HighLevelPolicy(model, processor), result
