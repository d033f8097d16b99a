"""A ~0.3M-parameter VLA configuration at 32 px with a 10 x 4 chunk: fast enough to overfit in seconds on CPU
(tests, smoke runs). Same architecture as `tiny`, smaller numbers."""
from __future__ import annotations

from ..common.vision import VisionConfig
from .configuration_vla import DecoderConfig, ExpertConfig, PromptDropout, VLAConfig, tiny


def micro(**overrides) -> VLAConfig:
    base = dict(vision=VisionConfig(image_size=32, patch_size=8, hidden_size=64, intermediate_size=128, num_layers=1,
                                    num_heads=2),
                decoder=DecoderConfig(hidden_size=64, num_layers=2, num_heads=2, num_kv_heads=1, head_dim=32,
                                      intermediate_size=128),
                expert=ExpertConfig(hidden_size=48, intermediate_size=96), action_horizon=10, action_dim=4,
                state_dim=4, memory_image_size=16, text_vocab_size=512, fast_vocab_size=300, max_fast_tokens=48,
                dropout=PromptDropout(0, 0, 0, 0, 0, 0))
    return tiny(**{**base, **overrides})
