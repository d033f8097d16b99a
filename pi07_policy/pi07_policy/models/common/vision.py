"""SigLIP-style image encoder (transformers' SiglipVisionModel built from a config) + a linear projector into
the decoder's width, as in PaliGemma. `pooled_tokens` makes the compact memory tokens (few per past frame)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class VisionConfig:
    image_size: int = 96
    patch_size: int = 16
    hidden_size: int = 128
    intermediate_size: int = 512
    num_layers: int = 2
    num_heads: int = 4

    def to_transformers(self):
        from transformers import SiglipVisionConfig
        return SiglipVisionConfig(hidden_size=self.hidden_size, intermediate_size=self.intermediate_size,
                                  num_hidden_layers=self.num_layers, num_attention_heads=self.num_heads,
                                  image_size=self.image_size, patch_size=self.patch_size, vision_use_head=False)

    @property
    def tokens_per_image(self) -> int:
        return (self.image_size // self.patch_size) ** 2


class VisionEncoder(nn.Module):
    def __init__(self, config: VisionConfig, out_dim: int):
        super().__init__()
        from transformers.models.siglip.modeling_siglip import SiglipVisionModel
        self.config = config
        self.siglip = SiglipVisionModel(config.to_transformers())
        self.projector = nn.Linear(config.hidden_size, out_dim)  # PaliGemma's multi_modal_projector

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """pixels (N, 3, S, S) in [-1, 1] -> tokens (N, P, out_dim), P = (S / patch)^2."""
        interpolate = pixels.shape[-1] != self.config.image_size
        feats = self.siglip(pixel_values=pixels, interpolate_pos_encoding=interpolate).last_hidden_state
        return self.projector(feats)

    @staticmethod
    def pool_tokens(tokens: torch.Tensor, tokens_out: int) -> torch.Tensor:
        """(N, P, C) patch tokens on a square grid -> (N, tokens_out, C) by average pooling (tokens_out = k^2)."""
        n, p, c = tokens.shape
        side, out_side = int(math.isqrt(p)), int(math.isqrt(tokens_out))
        grid = tokens.transpose(1, 2).reshape(n, c, side, side)
        return F.adaptive_avg_pool2d(grid, out_side).flatten(2).transpose(1, 2)
