"""The pi07 world model: a latent flow-matching generator of subgoal images, one per camera (pi0.7).

Read top to bottom: building blocks, the VAE, the text encoder, the conditional UNet, then `WorldModel`, which
ties them together with the flow-matching loss and the Euler sampler.

Shapes: B batch, V cameras, S image size, C latent channels, h = w = S / f latent size, L text tokens.

Flow matching (rectified flow) from the current scene to the subgoal: the source is the current image's latent plus
noise, z_0 = z_current + source_noise * eps (pure noise eps when the current image is absent), z_t = t * z_subgoal +
(1 - t) * z_0, the UNet predicts the velocity v = z_subgoal - z_0, and sampling integrates dz/dt = v from t = 0 to
t = 1 with a fixed number of Euler steps. Starting from the current scene rather than from noise means an untrained
model already predicts "nothing moves", and training only has to learn what changes, which is most of the speed-up
on small data. The current latent also enters as extra input channels at every step, all cameras of a sample meet
in the attention layers (so the wrist view can follow the scene view), and the text and metadata enter through
cross-attention and a global conditioning vector (adaptive GroupNorm).
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from pi07_policy.checkpoint import CheckpointError, config_from_dict, load_checkpoint, load_weights, save_checkpoint

from .configuration_world_model import (
    CONTROL_MODE_VALUES,
    MISTAKE_VALUES,
    QUALITY_VALUES,
    SPEED_VALUES,
    VAEConfig,
    WorldModelConfig,
)
from .processing_world_model import TOKENIZER_FILE, WorldModelProcessor

# Number of entries of each metadata embedding table (+1: index 0 = unspecified).
METADATA_VOCAB = (len(SPEED_VALUES) + 1, len(QUALITY_VALUES) + 1, len(MISTAKE_VALUES) + 1,
                  len(CONTROL_MODE_VALUES) + 1)


# ---------------------------------------------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------------------------------------------

class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice with a skip; optional adaptive GroupNorm (scale, shift) from a cond vector."""

    def __init__(self, in_ch: int, out_ch: int, groups: int, cond_dim: int | None = None):
        super().__init__()
        self.norm1 = nn.GroupNorm(min(groups, in_ch), in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.norm2 = nn.GroupNorm(min(groups, out_ch), out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()
        self.cond = nn.Linear(cond_dim, 2 * out_ch) if cond_dim else None
        if self.cond is not None:  # start as a plain ResBlock: no modulation until it is learned
            nn.init.zeros_(self.cond.weight)
            nn.init.zeros_(self.cond.bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        # x: (N, in_ch, H, W), cond: (N, cond_dim)
        h = self.conv1(F.silu(self.norm1(x)))                     # (N, out_ch, H, W)
        h = self.norm2(h)
        if self.cond is not None:
            scale, shift = self.cond(F.silu(cond))[:, :, None, None].chunk(2, dim=1)
            h = h * (1 + scale) + shift
        h = self.conv2(F.silu(h))
        return self.skip(x) + h


class Attention(nn.Module):
    """Multi-head attention of queries x over a context (itself when context is None)."""

    def __init__(self, dim: int, heads: int, context_dim: int | None = None):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim, bias=False)
        self.kv = nn.Linear(context_dim or dim, 2 * dim, bias=False)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None,
                context_mask: torch.Tensor | None = None) -> torch.Tensor:
        # x: (B, N, dim), context: (B, M, context_dim), context_mask: (B, M) bool, True = attend
        B, N, D = x.shape
        context = x if context is None else context
        q = self.q(x).view(B, N, self.heads, D // self.heads).transpose(1, 2)          # (B, heads, N, d)
        k, v = self.kv(context).view(B, context.shape[1], 2, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        mask = None if context_mask is None else context_mask[:, None, None, :]        # (B, 1, 1, M)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)                    # (B, heads, N, d)
        return self.out(y.transpose(1, 2).reshape(B, N, D))


def without_prompt(batch: dict) -> dict:
    """The batch with text (all but BOS) and metadata dropped, images kept: the 'unconditional' branch of CFG."""
    mask = torch.zeros_like(batch['text_mask'])
    mask[:, 0] = True
    return {**batch, 'text_mask': mask, 'metadata': torch.zeros_like(batch['metadata'])}


def sample_flow_time(n: int, device=None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Training times t in (0, 1), logit-normal: most samples at mid times, where the velocity is hardest."""
    return torch.sigmoid(torch.randn(n, device=device, generator=generator))


def sincos_2d(h: int, w: int, dim: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Fixed 2D sine-cosine position features of an h x w grid: (h*w, dim), half the channels per axis."""
    quarter = dim // 4
    freqs = torch.exp(-math.log(100.0) * torch.arange(quarter, device=device, dtype=torch.float32) / quarter)
    ys, xs = torch.meshgrid(torch.arange(h, device=device, dtype=torch.float32),
                            torch.arange(w, device=device, dtype=torch.float32), indexing='ij')
    ay, ax = ys.reshape(-1, 1) * freqs, xs.reshape(-1, 1) * freqs                 # (h*w, quarter) each
    emb = torch.cat([ay.sin(), ay.cos(), ax.sin(), ax.cos()], dim=1)               # (h*w, 4*quarter)
    return F.pad(emb, (0, dim - emb.shape[1])).to(dtype)


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal features of the flow time t in [0, 1]: (N,) -> (N, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    angles = 1000.0 * t.float()[:, None] * freqs[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


# ---------------------------------------------------------------------------------------------------------------
# VAE: images <-> latents
# ---------------------------------------------------------------------------------------------------------------

class VAE(nn.Module):
    """Patch VAE. encode: (N, 3, S, S) in [-1, 1] -> mean, logvar (N, C, S/p, S/p); decode: the inverse.

    Every p x p patch is folded into channels (pixel unshuffle) and all convolutions run at latent resolution;
    the decoder unfolds 3 * p * p channels back into pixels. Compared with a strided-conv VAE of the same cost this
    trains several times faster and keeps small objects (the blocks of a tabletop) sharp, because each latent
    cell owns its patch of pixels from the first step instead of having to learn that through downsampling.
    """

    def __init__(self, cfg: VAEConfig, groups: int = 8):
        super().__init__()
        p, hid, C = cfg.patch_size, cfg.hidden, cfg.latent_channels
        self.patch = p
        self.enc_in = nn.Conv2d(3 * p * p, hid, 3, padding=1)
        self.enc_blocks = nn.ModuleList([ResBlock(hid, hid, groups) for _ in range(cfg.res_blocks)])
        self.enc_out = nn.Sequential(nn.GroupNorm(groups, hid), nn.SiLU(), nn.Conv2d(hid, 2 * C, 3, padding=1))
        # Start with small posterior noise (std ~0.02): with unit noise and a tiny KL weight the decoder first
        # learns to ignore the latent and paints the mean image for a long time (posterior collapse).
        with torch.no_grad():
            self.enc_out[-1].bias[C:].fill_(-8.0)
        self.dec_in = nn.Conv2d(C, hid, 3, padding=1)
        self.dec_blocks = nn.ModuleList([ResBlock(hid, hid, groups) for _ in range(cfg.res_blocks)])
        self.dec_out = nn.Sequential(nn.GroupNorm(groups, hid), nn.SiLU(), nn.Conv2d(hid, 3 * p * p, 3, padding=1))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.enc_in(F.pixel_unshuffle(x, self.patch))     # (N, 3*p*p, S/p, S/p) -> (N, hid, h, w)
        for block in self.enc_blocks:
            h = block(h)
        mean, logvar = self.enc_out(h).chunk(2, dim=1)        # (N, C, h, w) each
        return mean, logvar.clamp(-20.0, 10.0)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        h = self.dec_in(z)                                    # (N, hid, h, w)
        for block in self.dec_blocks:
            h = block(h)
        return F.pixel_shuffle(self.dec_out(h), self.patch)   # (N, 3*p*p, h, w) -> (N, 3, S, S), ~[-1, 1]

    def loss(self, x: torch.Tensor, kl_weight: float) -> dict[str, torch.Tensor]:
        """Reconstruction (L1 + MSE per pixel) + kl_weight * KL(q(z|x) || N(0, 1)) per latent element."""
        mean, logvar = self.encode(x)
        z = mean + torch.randn_like(mean) * (0.5 * logvar).exp()
        recon = self.decode(z)
        rec = F.l1_loss(recon, x) + F.mse_loss(recon, x)
        kl = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).mean()
        return {'loss': rec + kl_weight * kl, 'vae_rec': rec.detach(), 'vae_kl': kl.detach()}


# ---------------------------------------------------------------------------------------------------------------
# Text encoder: "task: ... subtask: ..." tokens -> per-token features and a pooled vector
# ---------------------------------------------------------------------------------------------------------------

class TextBlock(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), context_mask=mask)
        return x + self.mlp(self.norm2(x))


class TextEncoder(nn.Module):
    def __init__(self, vocab_size: int, max_tokens: int, dim: int, depth: int, heads: int):
        super().__init__()
        self.tok = nn.Embedding(vocab_size, dim)
        self.pos = nn.Parameter(torch.zeros(max_tokens, dim))
        nn.init.normal_(self.pos, std=0.02)
        self.blocks = nn.ModuleList([TextBlock(dim, heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # ids, mask: (B, L); position 0 is always a BOS token, so every row has one valid token.
        x = self.tok(ids) + self.pos[: ids.shape[1]]          # (B, L, D)
        for block in self.blocks:
            x = block(x, mask)
        x = self.norm(x)
        m = mask[..., None].float()
        pooled = (x * m).sum(1) / m.sum(1).clamp(min=1.0)      # (B, D): mean over valid tokens
        return x, pooled


# ---------------------------------------------------------------------------------------------------------------
# Conditional UNet over the latents of all cameras of a sample
# ---------------------------------------------------------------------------------------------------------------

class ViewTextAttention(nn.Module):
    """Self-attention across every position of every camera of a sample, then cross-attention to the text."""

    def __init__(self, ch: int, heads: int, groups: int, text_dim: int, position_embedding: bool):
        super().__init__()
        self.position_embedding = position_embedding
        self.norm = nn.GroupNorm(groups, ch)
        self.self_attn = Attention(ch, heads)
        self.norm_cross = nn.LayerNorm(ch)
        self.cross_attn = Attention(ch, heads, context_dim=text_dim)
        self.norm_mlp = nn.LayerNorm(ch)
        self.mlp = nn.Sequential(nn.Linear(ch, 2 * ch), nn.GELU(), nn.Linear(2 * ch, ch))

    def forward(self, x: torch.Tensor, num_views: int, text: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
        # x: (B*V, ch, h, w); text: (B, L, text_dim)
        BV, ch, h, w = x.shape
        B = BV // num_views
        tokens = self.norm(x).view(B, num_views, ch, h * w).permute(0, 1, 3, 2)  # (B, V, h*w, ch)
        if self.position_embedding:   # where each token is in its image (the same grid for every camera)
            tokens = tokens + sincos_2d(h, w, ch, x.device, x.dtype)
        tokens = self.self_attn(tokens.reshape(B, num_views * h * w, ch))           # (B, V*h*w, ch)
        tokens = tokens + self.cross_attn(self.norm_cross(tokens), text, text_mask)
        tokens = tokens + self.mlp(self.norm_mlp(tokens))
        delta = tokens.view(B, num_views, h * w, ch).permute(0, 1, 3, 2).reshape(BV, ch, h, w)
        return x + delta


class UNet(nn.Module):
    """Velocity predictor: (noisy latent, context latent, context-present flag) -> velocity, per camera."""

    def __init__(self, cfg: WorldModelConfig):
        super().__init__()
        u = cfg.unet
        C = cfg.vae.latent_channels
        ch, g, cd, td = u.channels, u.groups, u.cond_dim, cfg.text.dim
        # inputs: noisy latent, current latent, its present flag [, keyframe latent, its present flag]
        self.conv_in = nn.Conv2d(2 * C + 1 + (C + 1 if cfg.reads_keyframe else 0), ch[0], 3, padding=1)

        self.down = nn.ModuleList()   # per level: res_blocks ResBlocks (+ attention), then downsample
        skip_ch = []
        for i, c in enumerate(ch):
            c_in = ch[i - 1] if i > 0 else ch[0]
            level = nn.ModuleDict({
                'res': nn.ModuleList([ResBlock(c_in if j == 0 else c, c, g, cd) for j in range(u.res_blocks)]),
                'attn': ViewTextAttention(c, u.heads, g, td, u.position_embedding) if u.attention[i] else nn.Identity(),
                'down': nn.Conv2d(c, c, 3, stride=2, padding=1) if i < len(ch) - 1 else nn.Identity(),
            })
            self.down.append(level)
            skip_ch.append(c)

        self.mid_res1 = ResBlock(ch[-1], ch[-1], g, cd)
        self.mid_attn = ViewTextAttention(ch[-1], u.heads, g, td, u.position_embedding)
        self.mid_res2 = ResBlock(ch[-1], ch[-1], g, cd)

        self.up = nn.ModuleList()     # per level (deepest first): ResBlock over [h, skip] (+ attention), upsample
        c_prev = ch[-1]
        for i in reversed(range(len(ch))):
            c = ch[i]
            level = nn.ModuleDict({
                'res': ResBlock(c_prev + skip_ch[i], c, g, cd),
                'attn': ViewTextAttention(c, u.heads, g, td, u.position_embedding) if u.attention[i] else nn.Identity(),
                'up': nn.Conv2d(c, ch[i - 1], 3, padding=1) if i > 0 else nn.Identity(),
            })
            self.up.append(level)
            c_prev = ch[i - 1] if i > 0 else c
        self.out = nn.Sequential(nn.GroupNorm(g, ch[0]), nn.SiLU(), nn.Conv2d(ch[0], C, 3, padding=1))
        nn.init.zeros_(self.out[-1].weight)   # predict zero velocity at init: a calm start
        nn.init.zeros_(self.out[-1].bias)

    @staticmethod
    def _attend(attn: nn.Module, h, num_views, text, text_mask):
        return h if isinstance(attn, nn.Identity) else attn(h, num_views, text, text_mask)

    def forward(self, z_t, context, context_flag, cond, num_views, text, text_mask,
                keyframe=None, keyframe_flag=None) -> torch.Tensor:
        # z_t, context[, keyframe]: (B*V, C, h, w); context_flag[, keyframe_flag]: (B*V,); cond: (B*V, cond_dim);
        # text: (B, L, Dt)
        def flag(f: torch.Tensor) -> torch.Tensor:
            return f[:, None, None, None].expand(-1, 1, *z_t.shape[2:]).to(z_t.dtype)
        inputs = [z_t, context, flag(context_flag)]
        if keyframe is not None:
            inputs += [keyframe, flag(keyframe_flag)]
        h = self.conv_in(torch.cat(inputs, dim=1))                         # (B*V, ch0, h, w)
        skips = []
        for level in self.down:
            for res in level['res']:
                h = res(h, cond)
            h = self._attend(level['attn'], h, num_views, text, text_mask)
            skips.append(h)
            h = level['down'](h)                                           # halve (except at the deepest level)
        h = self.mid_res1(h, cond)
        h = self.mid_attn(h, num_views, text, text_mask)
        h = self.mid_res2(h, cond)
        for level in self.up:
            h = level['res'](torch.cat([h, skips.pop()], dim=1), cond)
            h = self._attend(level['attn'], h, num_views, text, text_mask)
            if not isinstance(level['up'], nn.Identity):
                h = level['up'](F.interpolate(h, scale_factor=2.0, mode='nearest'))
        return self.out(h)                                                 # (B*V, C, h, w)


# ---------------------------------------------------------------------------------------------------------------
# The world model
# ---------------------------------------------------------------------------------------------------------------

class WorldModel(nn.Module):
    """Subgoal-image generator. Tensor API (`flow_loss`, `vae_loss`, `sample`) works on processed batches;
    `generate` is the dict-in/dict-out API (it needs a processor, i.e. a trained tokenizer: see
    `processing_world_model.WorldModelProcessor` and `from_pretrained`)."""

    def __init__(self, config: WorldModelConfig, processor=None):
        super().__init__()
        self.config = config
        self.processor = processor   # not a module: tokenizer + metadata/image conversion
        C = config.vae.latent_channels
        cd = config.unet.cond_dim
        self.vae = VAE(config.vae)
        t = config.text
        self.text_encoder = TextEncoder(t.vocab_size, t.max_tokens, t.dim, t.depth, t.heads)
        self.unet = UNet(config)
        self.time_mlp = nn.Sequential(nn.Linear(cd, cd), nn.SiLU(), nn.Linear(cd, cd))
        self.metadata_embed = nn.ModuleList([nn.Embedding(n, cd) for n in METADATA_VOCAB])
        self.camera_embed = nn.Embedding(len(config.camera_names), cd)
        self.text_to_cond = nn.Linear(t.dim, cd)
        # Latent normalisation (per channel), fitted on training data after the VAE is trained; saved with the
        # weights so that a checkpoint is self-contained.
        self.register_buffer('latent_mean', torch.zeros(C))
        self.register_buffer('latent_std', torch.ones(C))

    # --- latents ------------------------------------------------------------------------------------------------
    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) in [-1, 1] -> normalised latent means (N, C, h, w)."""
        mean, _ = self.vae.encode(images)
        return (mean - self.latent_mean[:, None, None]) / self.latent_std[:, None, None]

    def decode_latents(self, z: torch.Tensor) -> torch.Tensor:
        """Normalised latents (N, C, h, w) -> images (N, 3, S, S) in [-1, 1]."""
        z = z * self.latent_std[:, None, None] + self.latent_mean[:, None, None]
        return self.vae.decode(z).clamp(-1.0, 1.0)

    @torch.no_grad()
    def fit_latent_stats(self, images: torch.Tensor) -> None:
        """Set latent_mean/std from a sample of images (N, 3, S, S): the flow then works on unit-scale latents."""
        mean, _ = self.vae.encode(images)
        self.latent_mean.copy_(mean.mean(dim=(0, 2, 3)))
        self.latent_std.copy_(mean.std(dim=(0, 2, 3)).clamp(min=1e-3))

    # --- conditioning ---------------------------------------------------------------------------------------------
    def condition(self, batch: dict) -> dict:
        """Everything that does not depend on the flow time, computed once per sample (like a prefix KV cache):
        cond (B, V, cond_dim) without time, text tokens (B, L, Dt), context latents (B*V, C, h, w), keep (B*V,)
        [, keyframe latents (B*V, C, h, w) and keyframe_keep (B*V,) where the model reads keyframes]."""
        images = batch['images']                                     # (B, V, 3, S, S)
        B, V = images.shape[:2]
        text, pooled = self.text_encoder(batch['text_ids'], batch['text_mask'])   # (B, L, Dt), (B, Dt)
        meta = sum(emb(batch['metadata'][:, i]) for i, emb in enumerate(self.metadata_embed))  # (B, cd)
        cam = self.camera_embed(batch['camera_ids'])                  # (V, cd)
        cond = (meta + self.text_to_cond(pooled))[:, None, :] + cam[None, :, :]   # (B, V, cd)
        keep = batch['image_keep'].reshape(B * V)                     # (B*V,): context image present
        context = self.encode_images(images.reshape(B * V, *images.shape[2:]))    # (B*V, C, h, w)
        context = context * keep[:, None, None, None].to(context.dtype)
        out = {'cond': cond, 'text': text, 'text_mask': batch['text_mask'], 'context': context, 'keep': keep}
        if self.config.reads_keyframe:
            frames = batch.get('keyframe_images')                       # (B, V, 3, S, S) or absent
            if frames is None:
                out['keyframe'], out['keyframe_keep'] = torch.zeros_like(context), torch.zeros_like(keep)
            else:
                kf_keep = batch['keyframe_keep'].reshape(B * V)         # (B*V,)
                keyframe = self.encode_images(frames.reshape(B * V, *frames.shape[2:]))
                out['keyframe'] = keyframe * kf_keep[:, None, None, None].to(keyframe.dtype)
                out['keyframe_keep'] = kf_keep
        return out

    def flow_source(self, cond: dict, noise: torch.Tensor) -> torch.Tensor:
        """z_0 = current latent + source_noise * noise where the current image is given, else pure noise."""
        keep = cond['keep'][:, None, None, None]                     # (B*V, 1, 1, 1)
        scale = torch.where(keep, self.config.source_noise, 1.0).to(noise.dtype)
        return cond['context'] + scale * noise

    def velocity(self, z_t: torch.Tensor, t: torch.Tensor, cond: dict) -> torch.Tensor:
        """v(z_t, t | conditioning): z_t (B*V, C, h, w), t (B,) -> (B*V, C, h, w)."""
        B, V, cd = cond['cond'].shape
        t_emb = self.time_mlp(timestep_embedding(t, cd))              # (B, cd)
        c = (cond['cond'] + t_emb[:, None, :]).reshape(B * V, cd)
        return self.unet(z_t, cond['context'], cond['keep'], c, V, cond['text'], cond['text_mask'],
                         cond.get('keyframe'), cond.get('keyframe_keep'))

    # --- training -----------------------------------------------------------------------------------------------
    # Two stages (see training_world_model.py): 'vae' trains the VAE alone; 'flow' trains everything else with
    # the VAE frozen, on latents normalised by latent_mean/std fitted in between.
    stage: str = 'flow'

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        """Losses of the current stage (the shared training loop's contract: a dict with 'loss')."""
        if self.stage == 'vae':
            return self.vae_loss(batch)
        if self.stage == 'flow':
            return self.flow_loss(batch)
        raise ValueError(f'unknown training stage {self.stage!r}')

    def set_stage(self, stage: str) -> None:
        """'vae': only the VAE learns; 'flow': everything but the VAE learns."""
        if stage not in ('vae', 'flow'):
            raise ValueError(f'unknown training stage {stage!r}')
        self.stage = stage
        for name, p in self.named_parameters():
            p.requires_grad_(name.startswith('vae.') == (stage == 'vae'))

    def vae_loss(self, batch: dict) -> dict[str, torch.Tensor]:
        """VAE loss on every current and subgoal image of the batch."""
        x = torch.cat([batch['images'].flatten(0, 1), batch['subgoal_images'].flatten(0, 1)])   # (2*B*V, 3, S, S)
        return self.vae.loss(x, self.config.vae.kl_weight)

    def flow_loss(self, batch: dict, noise: torch.Tensor | None = None,
                  t: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Flow-matching MSE on the subgoal latents (the VAE is frozen here: its latents are targets).
        noise (B*V, C, h, w) and t (B,) may be given (a fixed evaluation); else they are drawn."""
        subgoal = batch['subgoal_images']                            # (B, V, 3, S, S)
        B, V = subgoal.shape[:2]
        with torch.no_grad():
            z_data = self.encode_images(subgoal.flatten(0, 1))       # (B*V, C, h, w)
        if noise is None:
            noise = torch.randn_like(z_data)
        if t is None:
            t = sample_flow_time(B, device=z_data.device)
        cond = self.condition(batch)
        z_source = self.flow_source(cond, noise)                     # (B*V, C, h, w)
        t_v = t.repeat_interleave(V)[:, None, None, None]            # (B*V, 1, 1, 1)
        z_t = t_v * z_data + (1.0 - t_v) * z_source
        v_pred = self.velocity(z_t, t, cond)
        per_view = (v_pred - (z_data - z_source)).pow(2).mean(dim=(1, 2, 3))    # (B*V,)
        present = batch.get('subgoal_present')
        weight = torch.ones_like(per_view) if present is None else present.reshape(-1).to(per_view.dtype)
        loss = (per_view * weight).sum() / weight.sum().clamp(min=1.0)
        return {'loss': loss, 'flow': loss.detach()}

    # --- sampling -----------------------------------------------------------------------------------------------
    @torch.inference_mode()
    def sample(self, batch: dict, num_steps: int | None = None, seed: int | None = None,
               guidance_scale: float | None = None) -> torch.Tensor:
        """Euler integration from the noised current scene to the subgoal images: (B, V, 3, S, S) in [-1, 1].

        guidance_scale > 1 applies classifier-free guidance on the prompt (text + metadata, not the images):
        v = v_no_prompt + scale * (v_prompt - v_no_prompt), which follows the subtask more strictly at twice the
        UNet cost. It relies on the prompt dropout of training."""
        images = batch['images']
        B, V = images.shape[:2]
        steps = num_steps or self.config.num_flow_steps
        scale = self.config.guidance_scale if guidance_scale is None else guidance_scale
        C, hw = self.config.vae.latent_channels, self.config.latent_size
        gen = torch.Generator(device=images.device)
        if seed is not None:
            gen.manual_seed(seed)
        else:
            gen.seed()
        noise = torch.randn(B * V, C, hw, hw, generator=gen, device=images.device)
        cond = self.condition(batch)
        z = self.flow_source(cond, noise)                            # t = 0: the current scene, noised
        uncond = self.condition(without_prompt(batch)) if scale != 1.0 else None
        dt = 1.0 / steps
        for i in range(steps):
            t = torch.full((B,), i * dt, device=images.device)
            v = self.velocity(z, t, cond)
            if uncond is not None:
                v_free = self.velocity(z, t, uncond)
                v = v_free + scale * (v - v_free)
            z = z + dt * v
        return self.decode_latents(z).view(B, V, 3, *images.shape[-2:])

    @torch.inference_mode()
    def generate(self, observation: dict, num_steps: int | None = None, seed: int | None = None,
                 guidance_scale: float | None = None) -> dict:
        """{'images': {cam: uint8 HxWx3}, 'subtask': str, 'task': str|None, 'metadata': dict|None
        [, 'keyframe_images': {cam: uint8 HxWx3}, the task's first frames, read where config.reads_keyframe]}
        -> {'subgoal_images': {cam: uint8 SxSx3}} for the cameras given (any subset of config.camera_names)."""
        if self.processor is None:
            raise RuntimeError('WorldModel.generate needs a processor (tokenizer); load the model with '
                               'WorldModel.from_pretrained or pass processor=WorldModelProcessor(...)')
        batch, cameras = self.processor.prepare_inference(observation, device=self.latent_mean.device)
        images = self.sample(batch, num_steps, seed, guidance_scale)      # (1, V, 3, S, S)
        return {'subgoal_images': self.processor.to_uint8_dict(images[0], cameras)}

    # --- checkpoints (pi07_policy.checkpoint: config.json + model.safetensors + files, verified, no pickle) -----
    def save_pretrained(self, directory: str | Path, **kwargs) -> Path:
        """Write a checkpoint directory: config, weights (latent normalisation included), text tokenizer, and
        norm_stats.json (the latent normalisation again, for people and tools that read json)."""
        if self.processor is None:
            raise RuntimeError('cannot save a world model without its processor (tokenizer)')
        stats = {'latent_mean': self.latent_mean.tolist(), 'latent_std': self.latent_std.tolist()}
        extra = {TOKENIZER_FILE: self.processor.tokenizer_json(), **kwargs.pop('extra_files', {})}
        return save_checkpoint(directory, self, self.config, model_type=self.config.model_type,
                               extra_files=extra, norm_stats=stats, **kwargs)

    @classmethod
    def from_pretrained(cls, directory: str | Path, map_location: str | torch.device = 'cpu') -> WorldModel:
        """Open a checkpoint written by save_pretrained; any missing, corrupt or mismatched part raises
        CheckpointError saying which."""
        ckpt = load_checkpoint(directory, WorldModelConfig.model_type, map_location=map_location)
        try:
            config = config_from_dict(WorldModelConfig, ckpt.config_dict)
        except (TypeError, ValueError) as exc:   # wrong field types or inconsistent sizes
            raise CheckpointError(f'{directory}: invalid world-model config: {exc}') from exc
        try:
            processor = WorldModelProcessor.from_tokenizer_file(config, ckpt.path(TOKENIZER_FILE))
        except ValueError as exc:
            raise CheckpointError(f'{directory}: {exc}') from exc
        model = cls(config, processor)
        load_weights(model, ckpt.state_dict, source=str(directory))
        return model.to(map_location).eval()

    def load_weights_from(self, directory: str | Path) -> None:
        """Load a checkpoint's weights into this model (same config); used by the training loop to resume."""
        ckpt = load_checkpoint(directory, self.config.model_type)
        load_weights(self, ckpt.state_dict, source=str(directory))

    def num_parameters(self) -> dict[str, int]:
        count = lambda m: sum(p.numel() for p in m.parameters())
        return {'vae': count(self.vae), 'text_encoder': count(self.text_encoder), 'unet': count(self.unet),
                'total': count(self)}
