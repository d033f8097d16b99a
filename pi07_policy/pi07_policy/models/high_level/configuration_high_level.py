"""High-level policy configuration: the same SigLIP/Gemma-style backbone as the VLA, used as a text decoder
(pi0.5 / Hi Robot: next subtask; MEM: language-memory updates)."""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from ..common.vision import VisionConfig
from ..vla.configuration_vla import DecoderConfig


@dataclass(frozen=True)
class HighLevelConfig:
    model_type: str = 'pi07_high_level'
    vision: VisionConfig = field(default_factory=VisionConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    vocab_size: int = 1024               # the text tokenizer's (trained on the corpus, stored in the checkpoint)
    max_cameras: int = 3
    max_prompt_tokens: int = 128
    max_target_tokens: int = 48
    image_dropout: float = 0.1           # training: drop all images of a sample (text-only prompts still work)


def tiny(**overrides) -> HighLevelConfig:
    return replace(HighLevelConfig(), **overrides)


def small(**overrides) -> HighLevelConfig:
    cfg = HighLevelConfig(vision=VisionConfig(hidden_size=256, intermediate_size=1024, num_layers=6, num_heads=4),
                          decoder=DecoderConfig(hidden_size=384, num_layers=8, num_heads=6, num_kv_heads=1,
                                                head_dim=64, intermediate_size=2048),
                          vocab_size=4096)
    return replace(cfg, **overrides)


def micro(**overrides) -> HighLevelConfig:
    """Seconds to overfit on CPU (tests)."""
    cfg = HighLevelConfig(vision=VisionConfig(image_size=32, patch_size=8, hidden_size=64, intermediate_size=128,
                                              num_layers=1, num_heads=2),
                          decoder=DecoderConfig(hidden_size=96, num_layers=2, num_heads=2, num_kv_heads=1,
                                                head_dim=48, intermediate_size=192),
                          vocab_size=512, image_dropout=0.0)
    return replace(cfg, **overrides)


PRESETS = {'micro': micro, 'tiny': tiny, 'small': small}
