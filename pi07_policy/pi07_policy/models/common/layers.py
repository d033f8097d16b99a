"""Gemma-style transformer pieces written out (so two streams can share one attention, as in pi0).

Parameter names follow transformers' Gemma (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj,
input_layernorm, post_attention_layernorm) so that real Gemma weights could be mapped in by name.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class RMSNorm(nn.Module):
    """Gemma RMSNorm: x / rms(x) * (1 + weight), weight initialised at 0."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        normed = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return normed * (1.0 + self.weight)


class AdaRMSNorm(nn.Module):
    """pi0.5 adaptive RMSNorm: scale and shift come from a conditioning vector (the flow time), plus a gate for
    the residual branch this norm feeds. With zero-initialised modulation it starts as a plain RMSNorm, gate 1."""

    def __init__(self, dim: int, cond_dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.modulation = nn.Linear(cond_dim, 3 * dim)
        nn.init.zeros_(self.modulation.weight)
        nn.init.zeros_(self.modulation.bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # x (B, T, dim), cond (B, cond_dim) or per token (B, T, cond_dim) -> normed (B, T, dim), gate (B, 1|T, dim)
        modulation = self.modulation(cond)
        if modulation.ndim == 2:
            modulation = modulation[:, None, :]
        scale, shift, gate = modulation.chunk(3, dim=-1)
        normed = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return normed * (1.0 + scale) + shift, 1.0 + gate


class GemmaMLP(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.gate_proj = nn.Linear(dim, hidden, bias=False)
        self.up_proj = nn.Linear(dim, hidden, bias=False)
        self.down_proj = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.gelu(self.gate_proj(x), approximate='tanh') * self.up_proj(x))


class AttentionProjections(nn.Module):
    """q/k/v/o projections of one stream; the attention itself is computed jointly in `joint_attention`."""

    def __init__(self, dim: int, num_heads: int, num_kv_heads: int, head_dim: int):
        super().__init__()
        self.num_heads, self.num_kv_heads, self.head_dim = num_heads, num_kv_heads, head_dim
        self.q_proj = nn.Linear(dim, num_heads * head_dim, bias=False)
        self.k_proj = nn.Linear(dim, num_kv_heads * head_dim, bias=False)
        self.v_proj = nn.Linear(dim, num_kv_heads * head_dim, bias=False)
        self.o_proj = nn.Linear(num_heads * head_dim, dim, bias=False)

    def qkv(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
        # x (B, T, dim) -> q (B, nh, T, hd), k, v (B, nkv, T, hd), rotary applied to q and k
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.num_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, t, self.num_kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.num_kv_heads, self.head_dim).transpose(1, 2)
        return apply_rotary(q, cos, sin), apply_rotary(k, cos, sin), v

    def out(self, y: torch.Tensor) -> torch.Tensor:
        # y (B, nh, T, hd) -> (B, T, dim)
        b, _, t, _ = y.shape
        return self.o_proj(y.transpose(1, 2).reshape(b, t, self.num_heads * self.head_dim))


def rotary_cos_sin(positions: torch.Tensor, head_dim: int, theta: float = 10000.0):
    """positions (B, T) int -> cos, sin (B, 1, T, head_dim) for rotate-half RoPE (Gemma/Llama layout)."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=positions.device, dtype=torch.float32) / head_dim))
    freqs = positions.float()[..., None] * inv_freq                      # (B, T, hd/2)
    emb = torch.cat([freqs, freqs], dim=-1)[:, None]                     # (B, 1, T, hd)
    return emb.cos(), emb.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos.to(x.dtype) + rotated * sin.to(x.dtype)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """q (B, nh, Tq, hd), k/v (B, nkv, Tk, hd), mask bool (B, 1, Tq, Tk) True = may attend -> (B, nh, Tq, hd)."""
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=k.shape[1] != q.shape[1])


def sinusoidal_embedding(t: torch.Tensor, dim: int, min_period: float = 4e-3, max_period: float = 4.0):
    """Flow time t (B,) or (B, T) in [0, 1] -> (B, dim) or (B, T, dim) sin/cos features over log-spaced periods
    (pi0)."""
    fraction = torch.linspace(0.0, 1.0, dim // 2, device=t.device, dtype=torch.float32)
    period = min_period * (max_period / min_period) ** fraction
    angle = t.float()[..., None] * (2 * math.pi / period)
    return torch.cat([angle.sin(), angle.cos()], dim=-1)
