"""Sampling action chunks: plain Euler flow integration (openpi's synchronous mode) and Real-Time Chunking's
guided inpainting (Black et al. 2025, arXiv 2506.07339), both on one prefix KV cache computed per chunk.

Conventions (openpi): x_t = t * noise + (1 - t) * actions, the model predicts u ~ noise - actions, sampling goes
from t = 1 (noise) to t = 0 in `num_steps` Euler steps, x <- x + dt * u with dt = -1 / num_steps.

RTC, in this convention (tau = 1 - t is the paper's time):
    x0_hat = x_t - t * u(x_t)                          the chunk the model would end at from here
    e      = W * (Y - x0_hat)                          Y: previous chunk's remaining actions, W: weights per step
    g      = e^T d x0_hat / d x_t                      one vector-Jacobian product through the expert
    u     <- u - min(beta, (1 - tau) / (tau * r2)) * g,   r2 = (1 - tau)^2 / (tau^2 + (1 - tau)^2)
W is 1 for the first d steps (they will run from the old chunk while this one is computed), decays
exponentially over the overlap up to s, and is 0 after. The first d actions are then set exactly to Y.
Works with any checkpoint trained for plain flow matching (no training-time change needed).

Training-time RTC (`sample_frozen`, for models trained with config.rtc_train_prob > 0): the first d actions are
the previous chunk's, held clean at flow time 0 on their tokens while the rest is integrated as usual; the model
learned in training what follows such a prefix, so no guidance (and no backward pass) is needed.
"""
from __future__ import annotations

import math
from contextlib import contextmanager

import torch

from .modeling_vla import PrefixCache, VLAModel


@torch.inference_mode()
def sample_plain(model: VLAModel, cache: PrefixCache, noise: torch.Tensor, num_steps: int) -> torch.Tensor:
    """noise (B, H, A) -> actions (B, H, A), normalised units."""
    x, dt = noise, -1.0 / num_steps
    for i in range(num_steps):
        t = torch.full((x.shape[0],), 1.0 + i * dt, device=x.device)
        x = x + dt * model.predict_velocity(cache, x, t)
    return x


@torch.inference_mode()
def sample_frozen(model: VLAModel, cache: PrefixCache, noise: torch.Tensor, previous: torch.Tensor,
                  delay: int, num_steps: int) -> torch.Tensor:
    """Training-time RTC: previous (B, R, A) normalised remaining actions of the last chunk, its first `delay` d
    rows given to the model clean (flow time 0 on their tokens). Returns (B, H, A) with [:, :d] == previous[:, :d]."""
    b, h, _ = noise.shape
    d = max(0, min(delay, previous.shape[1], h))
    frozen = torch.arange(h, device=noise.device) < d                              # (H,)
    x, dt = noise.clone(), -1.0 / num_steps
    x[:, :d] = previous[:, :d]
    for i in range(num_steps):
        t = torch.where(frozen, 0.0, 1.0 + i * dt).expand(b, h)                     # (B, H)
        x = x + dt * model.predict_velocity(cache, x, t)
        x[:, :d] = previous[:, :d]
    return x


def rtc_weights(horizon: int, delay: int, overlap: int) -> torch.Tensor:
    """(horizon,) guidance weights: 1 for i < delay, c_i (e^{c_i} - 1) / (e - 1) with c_i decreasing linearly to
    0 over delay <= i < overlap, 0 from overlap on (paper eq. 5, with our `overlap` = the paper's H - s)."""
    i = torch.arange(horizon, dtype=torch.float32)
    overlap = max(min(overlap, horizon), delay)
    c = (overlap - i) / max(1, overlap - delay + 1)
    w = c * (torch.exp(c) - 1) / (math.e - 1)
    w = torch.where(i < delay, torch.ones_like(w), w)
    return torch.where(i >= overlap, torch.zeros_like(w), w)


@contextmanager
def frozen_parameters(model: torch.nn.Module):
    """Parameters stop requiring grad for a while: the VJP then records only the path from x_t (cheaper)."""
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def sample_rtc(model: VLAModel, cache: PrefixCache, noise: torch.Tensor, previous: torch.Tensor, delay: int,
               overlap: int, num_steps: int, max_guidance: float = 5.0) -> torch.Tensor:
    """Guided sampling: previous (B, R, A) normalised remaining actions of the last chunk (R <= H), `delay` d
    steps frozen, guidance over the first `overlap` s steps. Returns (B, H, A) with [:, :d] == previous[:, :d]."""
    b, h, a = noise.shape
    r = previous.shape[1]
    delay, overlap = max(0, min(delay, r)), max(0, min(overlap, r))
    target = noise.new_zeros(b, h, a)
    target[:, :r] = previous[:, :h]
    weights = rtc_weights(h, delay, overlap).to(noise)[None, :, None]             # (1, H, 1)
    x, dt = noise, -1.0 / num_steps
    with frozen_parameters(model):
        for i in range(num_steps):
            t_val = 1.0 + i * dt
            t = torch.full((b,), t_val, device=x.device)
            x_in = x.detach().requires_grad_(True)
            with torch.enable_grad():
                u = model.predict_velocity(cache, x_in, t)
                x0_hat = x_in - t_val * u
                (g,) = torch.autograd.grad(x0_hat, x_in, grad_outputs=weights * (target - x0_hat.detach()))
            tau = 1.0 - t_val
            if tau <= 0:
                scale = max_guidance
            else:
                r2 = (1 - tau) ** 2 / (tau ** 2 + (1 - tau) ** 2)
                scale = min(max_guidance, (1 - tau) / (tau * r2))
            x = (x + dt * (u.detach() - scale * g)).detach()
    x[:, :delay] = target[:, :delay]
    return x
