"""Image encoders: tokens on a square grid, projected into the decoder's width (PaliGemma's projector).

- `siglip` (default): SigLIP-style ViT (transformers' SiglipVisionModel built from a config), the layout a real
  PaliGemma / pi0.5 checkpoint maps onto.
- `conv`: a small residual CNN with coordinate channels and a learned 2-D position embedding, one token per
  `patch_size` x `patch_size` cell. Convolutions carry the locality prior a ViT must learn from data, so a model
  trained from scratch on a few hundred demonstrations localises objects far sooner (docs/models.md).

`pool_tokens` makes the compact memory tokens (few per past frame)."""
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
    kind: str = 'siglip'   # 'siglip' | 'conv'
    # conv only: language conditioning of the feature maps (FiLM, as RT-1 / BC-Z) and spatial-softmax keypoints
    film: bool = False     # scale/shift every stage's features from a prompt embedding
    film_source: str = 'prompt'  # 'prompt': every prompt token; 'subtask': the subtask's (else the task's)
    keypoints: int = 0     # K expected (x, y) positions of K feature maps, one extra token per image
    keypoint_stride: int = 8  # px of input per keypoint-map cell (finer maps localise small objects better)

    def to_transformers(self):
        from transformers import SiglipVisionConfig
        return SiglipVisionConfig(hidden_size=self.hidden_size, intermediate_size=self.intermediate_size,
                                  num_hidden_layers=self.num_layers, num_attention_heads=self.num_heads,
                                  image_size=self.image_size, patch_size=self.patch_size, vision_use_head=False)

    def grid_tokens(self, image_size: int | None = None) -> int:
        return ((image_size or self.image_size) // self.patch_size) ** 2

    def tokens(self, image_size: int | None = None) -> int:
        """Tokens per image of this size: the patch grid, then the keypoint token if any."""
        return self.grid_tokens(image_size) + (1 if self.kind == 'conv' and self.keypoints else 0)

    @property
    def tokens_per_image(self) -> int:
        return self.tokens()


class ResidualBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.norm1 = nn.GroupNorm(8, channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.norm2 = nn.GroupNorm(8, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.silu(self.norm1(self.conv1(x)))
        return F.silu(x + self.norm2(self.conv2(h)))


class ConvStage(nn.Module):
    """Stride-2 conv, GroupNorm, optional FiLM (zero-initialised: starts as the identity), SiLU, residual block."""

    def __init__(self, c_in: int, c_out: int, residual: bool, film_dim: int):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False)
        self.norm = nn.GroupNorm(8, c_out)
        self.film = nn.Linear(film_dim, 2 * c_out) if film_dim else None
        if self.film is not None:
            nn.init.zeros_(self.film.weight)
            nn.init.zeros_(self.film.bias)
        self.block = ResidualBlock(c_out) if residual else nn.Identity()

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        x = self.norm(self.conv(x))
        if self.film is not None and cond is not None:
            scale, shift = self.film(cond)[:, :, None, None].chunk(2, dim=1)
            x = x * (1 + scale) + shift
        return self.block(F.silu(x))


class ConvEncoder(nn.Module):
    """(N, 3, S, S) [+ prompt embedding (N, film_dim)] -> (N, (S / patch)^2 [+ 1], hidden).

    Stride-2 stages, one per factor of 2 in patch_size, widths doubling up to `hidden_size`; coordinate channels
    at the input (CoordConv) and a learned 2-D position table on the output grid. With `keypoints`, K feature
    maps (at `keypoint_stride`) are turned into their softmax-expected (x, y) image positions (the spatial softmax of
    deep visuomotor policies), projected into one more token: precise positions without a fine token grid."""

    def __init__(self, config: VisionConfig, film_dim: int = 0):
        super().__init__()
        stages = int(math.log2(config.patch_size))
        if 2 ** stages != config.patch_size or stages < 1:
            raise ValueError(f'conv vision encoder: patch_size must be a power of 2, got {config.patch_size}')
        widths = [max(16, config.hidden_size >> (stages - 1 - i)) for i in range(stages)]
        film_dim = film_dim if config.film else 0
        self.stages = nn.ModuleList(ConvStage(c_in, c, i > 0, film_dim)
                                    for i, (c_in, c) in enumerate(zip([5, *widths[:-1]], widths)))
        self.out = nn.Conv2d(widths[-1], config.hidden_size, 1)
        side = config.image_size // config.patch_size
        self.position = nn.Parameter(torch.randn(1, config.hidden_size, side, side) * 0.02)
        kp_stage = int(math.log2(config.keypoint_stride)) - 1
        if 2 ** (kp_stage + 1) != config.keypoint_stride or kp_stage < 0:
            raise ValueError(f'conv vision encoder: keypoint_stride must be a power of 2, got {config.keypoint_stride}')
        self.keypoint_stage = min(kp_stage, stages - 1)               # that stride, or the last stage if coarser
        if config.keypoints:
            self.keypoint_maps = nn.Conv2d(widths[self.keypoint_stage], config.keypoints, 1)
            self.keypoint_proj = nn.Linear(2 * config.keypoints, config.hidden_size)

    @staticmethod
    def coordinates(n: int, h: int, w: int, like: torch.Tensor) -> torch.Tensor:
        ys = torch.linspace(-1, 1, h, device=like.device, dtype=like.dtype)
        xs = torch.linspace(-1, 1, w, device=like.device, dtype=like.dtype)
        return torch.stack(torch.meshgrid(ys, xs, indexing='ij'))[None].expand(n, -1, -1, -1)   # (N, 2, h, w)

    def forward(self, pixels: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        n, _, h, w = pixels.shape
        x = torch.cat([pixels, self.coordinates(n, h, w, pixels)], dim=1)                      # (N, 5, S, S)
        keypoint_feats = None
        for i, stage in enumerate(self.stages):
            x = stage(x, cond)
            if i == self.keypoint_stage:
                keypoint_feats = x
        feats = self.out(x)                                                  # (N, hidden, S/p, S/p)
        pos = self.position
        if pos.shape[-2:] != feats.shape[-2:]:             # smaller inputs (memory frames): resample the table
            pos = F.interpolate(pos, size=feats.shape[-2:], mode='bilinear', align_corners=False)
        tokens = (feats + pos).flatten(2).transpose(1, 2)                   # (N, P, hidden)
        if not hasattr(self, 'keypoint_maps'):
            return tokens
        maps = self.keypoint_maps(keypoint_feats)                           # (N, K, h', w')
        attn = maps.flatten(2).softmax(-1)                                   # (N, K, h'w')
        grid = self.coordinates(1, *maps.shape[-2:], maps).flatten(2)[0]     # (2, h'w')
        points = torch.einsum('nkp,cp->nkc', attn, grid).flatten(1)          # (N, 2K) expected (y, x)
        return torch.cat([tokens, self.keypoint_proj(points)[:, None]], dim=1)


class VisionEncoder(nn.Module):
    def __init__(self, config: VisionConfig, out_dim: int):
        super().__init__()
        self.config = config
        if config.kind == 'siglip':
            from transformers.models.siglip.modeling_siglip import SiglipVisionModel
            self.siglip = SiglipVisionModel(config.to_transformers())
        elif config.kind == 'conv':
            self.conv = ConvEncoder(config, film_dim=out_dim)
        else:
            raise ValueError(f"unknown vision encoder kind {config.kind!r}: expected 'siglip' or 'conv'")
        self.projector = nn.Linear(config.hidden_size, out_dim)  # PaliGemma's multi_modal_projector

    @property
    def conditioned(self) -> bool:
        """Whether forward uses a prompt embedding (FiLM)."""
        return self.config.kind == 'conv' and self.config.film

    def forward(self, pixels: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """pixels (N, 3, S, S) in [-1, 1] [, prompt embedding (N, out_dim) for FiLM] -> tokens (N, P, out_dim),
        P = config.tokens(S): the (S / patch)^2 grid, row-major, then the keypoint token if any."""
        if self.config.kind == 'conv':
            return self.projector(self.conv(pixels, cond))
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
