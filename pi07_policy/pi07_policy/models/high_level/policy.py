"""The high-level policy boundary (dict in, dict out):

    hl = HighLevelPolicy.from_checkpoint(path)
    hl.infer({'images': {...}, 'task': ..., 'memory': ..., 'metadata': {...}, 'subtask_history': [...]})
        -> {'subtask': 'pick up the red block', 'task_done': False}
    hl.update_memory({'images': {...}, 'task': ..., 'memory': ..., 'completed_subtask': ...})
        -> {'memory': 'I have picked up the red block.'}
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ...checkpoint import load_checkpoint, load_weights, save_checkpoint
from ..common.text_tokenizer import DONE_ID
from .configuration_high_level import HighLevelConfig
from .modeling_high_level import HighLevelModel
from .processing_high_level import HighLevelProcessor


class HighLevelPolicy:
    def __init__(self, model: HighLevelModel, processor: HighLevelProcessor):
        self.model = model.eval()
        self.processor = processor
        self.config = model.config

    def save(self, directory: str | Path, profile: str | Path | None = None, embodiment: str | None = None) -> Path:
        return save_checkpoint(directory, self.model, self.config, extra_files=self.processor.to_files(),
                               profile=profile, embodiment=embodiment)

    @classmethod
    def from_checkpoint(cls, directory: str | Path, expected_embodiment: str | None = None) -> HighLevelPolicy:
        ckpt = load_checkpoint(directory, HighLevelConfig.model_type, config_cls=HighLevelConfig,
                               expected_embodiment=expected_embodiment)
        model = HighLevelModel(ckpt.config)
        load_weights(model, ckpt.state_dict, source=str(directory))
        return cls(model, HighLevelProcessor.from_checkpoint(ckpt, ckpt.config))

    def _generate(self, sample: Mapping[str, Any]) -> list[int]:
        batch = self.processor.collate([sample], with_targets=False)
        return self.model.generate(batch)[0]

    def infer(self, obs: Mapping[str, Any]) -> dict[str, Any]:
        sample = {k: obs.get(k) for k in ('images', 'task', 'memory', 'metadata', 'subtask_history')}
        ids = self._generate(sample)
        if ids[:1] == [DONE_ID]:
            return {'subtask': '', 'task_done': True}
        return {'subtask': self.processor.decode(ids), 'task_done': False}

    def update_memory(self, obs: Mapping[str, Any]) -> dict[str, str]:
        sample = {'images': obs.get('images'), 'task': obs.get('task'), 'memory': obs.get('memory'),
                  'completed_subtask': obs.get('completed_subtask') or obs.get('subtask'), 'updated_memory': ''}
        return {'memory': self.processor.decode(self._generate(sample))}
