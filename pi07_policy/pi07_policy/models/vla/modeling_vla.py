"""The pi07 VLA: a vision-language backbone and a flow-matching action expert that share attention (pi0),
with adaRMS time conditioning (pi0.5), FAST-token prediction and Knowledge Insulation (pi0.5-KI).

Token layout (B = batch, D = decoder width, E = expert width, H = action horizon, A = action dim):

    prefix  = [camera images | subgoal images | memory frames (few tokens each) | text | state]   (B, Lp, D)
    fast    = [<boa> f1 .. fn]  FAST tokens of the target chunk, training only                   (B, F, D)
    suffix  = noisy action chunk, one token per time step                                         (B, H, E)

Attention: the prefix is bidirectional within itself; FAST tokens are causal and see the prefix; the suffix
sees the prefix and itself (bidirectional), never the FAST tokens. Because nothing in the prefix looks at the
suffix, the prefix is run once by the backbone and its per-layer keys/values are the KV cache that every
denoising step of the expert reads (`encode_prefix` once, then `predict_velocity` ~10 times).

Knowledge Insulation: the expert reads the cached keys/values through `detach()`, so the flow-matching loss
trains the expert only; the backbone learns from the FAST cross-entropy.

Goal conditioning (config.goal_conditioning): two auxiliary heads predict the joint state where the current
subtask ends (one on the backbone's state token, one on the image encoder's keypoint tokens); the image encoder's
detached prediction (in training, for some samples, the true goal plus noise) and the state join the flow time in
the expert's adaRMS condition.

Every prompt component may be absent: masks mark valid tokens, positions are the running count of valid
tokens, and in training whole components are dropped at random (config.dropout).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..common.layers import (
    AdaRMSNorm,
    AttentionProjections,
    GemmaMLP,
    RMSNorm,
    attention,
    rotary_cos_sin,
    sinusoidal_embedding,
)
from ..common.vision import VisionEncoder
from .configuration_vla import VLAConfig

# text segments (processing marks each text token with the component it belongs to)
SEGMENT_TASK, SEGMENT_SUBTASK, SEGMENT_METADATA = 0, 1, 2


def pack_tokens(tokens: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """tokens (B, L, D), mask (B, L) -> (B, L', D), (B, L'): each sample's valid tokens moved to the front (in
    order) and the columns no sample uses cut off. Exact: positions count valid tokens and attention never
    reads an invalid key, so only the padding a batch carries (absent subgoals, dropped text) goes away."""
    order = torch.sort((~mask).to(torch.uint8), dim=1, stable=True).indices       # valid first, order kept
    length = max(int(mask.sum(1).max()), 1)
    order = order[:, :length]
    packed = torch.gather(tokens, 1, order[..., None].expand(-1, -1, tokens.shape[-1]))
    return packed, torch.gather(mask, 1, order)


class DecoderLayer(nn.Module):
    """A Gemma layer of the backbone."""

    def __init__(self, cfg: VLAConfig):
        super().__init__()
        d = cfg.decoder
        self.input_layernorm = RMSNorm(d.hidden_size)
        self.self_attn = AttentionProjections(d.hidden_size, d.num_heads, d.num_kv_heads, d.head_dim)
        self.post_attention_layernorm = RMSNorm(d.hidden_size)
        self.mlp = GemmaMLP(d.hidden_size, d.intermediate_size)

    def forward(self, x, cos, sin, mask, past_kv=None):
        # x (B, T, D) -> x (B, T, D), (k, v) of all T (+ past) keys for caching
        q, k, v = self.self_attn.qkv(self.input_layernorm(x), cos, sin)
        if past_kv is not None:
            k, v = torch.cat([past_kv[0], k], dim=2), torch.cat([past_kv[1], v], dim=2)
        x = x + self.self_attn.out(attention(q, k, v, mask))
        x = x + self.mlp(self.post_attention_layernorm(x))
        return x, (k, v)


class ExpertLayer(nn.Module):
    """A Gemma layer of the action expert: adaRMS norms conditioned on flow time; its queries attend to the
    backbone's keys/values of the same layer (the prefix) and to its own."""

    def __init__(self, cfg: VLAConfig):
        super().__init__()
        d, e = cfg.decoder, cfg.expert
        self.input_layernorm = AdaRMSNorm(e.hidden_size, e.hidden_size)
        self.self_attn = AttentionProjections(e.hidden_size, d.num_heads, d.num_kv_heads, d.head_dim)
        self.post_attention_layernorm = AdaRMSNorm(e.hidden_size, e.hidden_size)
        self.mlp = GemmaMLP(e.hidden_size, e.intermediate_size)

    def forward(self, x, cond, cos, sin, mask, prefix_k, prefix_v):
        # x (B, H, E), cond (B, E), prefix_k/v (B, nkv, Lp, hd) -> (B, H, E)
        h, gate = self.input_layernorm(x, cond)
        q, k, v = self.self_attn.qkv(h, cos, sin)
        k, v = torch.cat([prefix_k, k], dim=2), torch.cat([prefix_v, v], dim=2)
        x = x + gate * self.self_attn.out(attention(q, k, v, mask))
        h, gate = self.post_attention_layernorm(x, cond)
        return x + gate * self.mlp(h)


@dataclass
class PrefixCache:
    """What the expert needs from the backbone: per-layer prefix keys/values, which prefix tokens are valid, and
    where the suffix positions start."""

    keys: list[torch.Tensor]        # per layer (B, nkv, Lp, hd)
    values: list[torch.Tensor]
    mask: torch.Tensor              # (B, Lp) bool
    next_position: torch.Tensor     # (B,) number of valid prefix tokens
    suffix: dict | None = None      # rotary tables and attention mask of the suffix, made once per chunk
    state_hidden: torch.Tensor | None = None  # (B, D) backbone output at the state token (goal head's input)
    goal_input: torch.Tensor | None = None    # (B, 2 Ds) goal estimate + state: the goal-conditioned expert's

    def detached(self) -> PrefixCache:
        return PrefixCache([k.detach() for k in self.keys], [v.detach() for v in self.values], self.mask,
                           self.next_position, goal_input=self.goal_input)

    def repeated(self, k: int) -> PrefixCache:
        """Each sample k times in a row (B -> k B), for several flow draws per prefix."""
        goal = self.goal_input.repeat_interleave(k, dim=0) if self.goal_input is not None else None
        return PrefixCache([x.repeat_interleave(k, dim=0) for x in self.keys],
                           [x.repeat_interleave(k, dim=0) for x in self.values],
                           self.mask.repeat_interleave(k, dim=0), self.next_position.repeat_interleave(k, dim=0),
                           goal_input=goal)


class VLAModel(nn.Module):
    def __init__(self, config: VLAConfig):
        super().__init__()
        self.config = config
        d, e = config.decoder.hidden_size, config.expert.hidden_size
        # --- backbone
        self.vision = VisionEncoder(config.vision, d)
        self.embed_tokens = nn.Embedding(config.vocab_size, d)
        self.camera_embed = nn.Parameter(torch.zeros(config.max_cameras, d))       # which camera
        self.role_embed = nn.Parameter(torch.zeros(3, d))                          # current / subgoal / memory
        self.memory_time_embed = nn.Parameter(torch.zeros(config.max_memory_frames, d))  # how long ago
        self.state_proj = nn.Linear(config.state_dim, d)
        self.layers = nn.ModuleList(DecoderLayer(config) for _ in range(config.decoder.num_layers))
        self.norm = RMSNorm(d)
        # --- action expert
        self.action_in_proj = nn.Linear(config.action_dim, e)
        self.time_mlp = nn.Sequential(nn.Linear(e, e), nn.SiLU(), nn.Linear(e, e), nn.SiLU())
        self.expert_layers = nn.ModuleList(ExpertLayer(config) for _ in range(config.decoder.num_layers))
        self.expert_norm = AdaRMSNorm(e, e)
        self.action_out_proj = nn.Linear(e, config.action_dim)
        # --- auxiliary goal-state head (training signal only)
        if config.goal_loss_weight > 0:
            self.goal_head = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, config.state_dim))
            # the same target from the image encoder alone (one summary token per camera slot + the state): a
            # short path that teaches the encoder where the named object is (`vision_goal_loss`)
            state_in = config.state_dim if config.vision_goal_reads_state else 0
            # current images (+ the memory keyframe and the subtask's text condition: which of the two holds the goal
            # depends on the subtask, "pick up the red block" or "put the red block back where it was")
            views = (2 * config.max_cameras * d + d) if config.vision_goal_reads_memory else config.max_cameras * d
            if config.vision_goal_reads_subgoal:   # + the subgoal images' summaries, before the state
                views += config.max_cameras * d
            self.vision_goal_head = nn.Sequential(nn.Linear(views + state_in, 2 * d),
                                                  nn.SiLU(), nn.Linear(2 * d, config.state_dim))
            if config.keyframe_encoder:   # the keyframe's own encoder (a copy of `vision` when added to a VLA)
                self.keyframe_vision = VisionEncoder(config.vision, d)
            if config.vision_goal_reads_subgoal:   # the subgoal images' own encoder (a copy of `vision` when added)
                self.subgoal_vision = VisionEncoder(config.vision, d)
        if config.goal_conditioning:   # [goal estimate, state] -> adaRMS condition of the expert
            self.goal_cond_mlp = nn.Sequential(nn.Linear(2 * config.state_dim, e), nn.SiLU(), nn.Linear(e, e))
        self._init_weights()

    def _init_weights(self):
        for name, p in self.named_parameters():
            if name.startswith(('vision.siglip', 'keyframe_vision.siglip', 'subgoal_vision.siglip')):
                continue  # transformers initialises SigLIP itself
            if p.ndim == 2 and 'modulation' not in name:
                nn.init.normal_(p, std=0.02)
            elif name.endswith('bias'):
                nn.init.zeros_(p)
        nn.init.normal_(self.camera_embed, std=0.02)
        nn.init.normal_(self.role_embed, std=0.02)
        nn.init.normal_(self.memory_time_embed, std=0.02)

    # ----------------------------------------------------------------------------------------------- prefix
    def _encode_images(self, pixels: torch.Tensor, mask: torch.Tensor, role: int,
                       cond: torch.Tensor | None = None, encoder: nn.Module | None = None) -> torch.Tensor:
        """pixels (B, N, 3, S, S), mask (B, N) [, prompt embedding (B, D)] -> tokens (B, N * P, D); absent
        images are not encoded. `encoder`: another image encoder than `vision` (the keyframe's)."""
        b, n = mask.shape
        present = pixels[mask]                                                      # (K, 3, S, S)
        p = self.config.vision.tokens(pixels.shape[-1])
        out = pixels.new_zeros(b, n, p, self.config.decoder.hidden_size)
        if present.shape[0]:
            film = cond[:, None].expand(b, n, -1)[mask] if cond is not None else None  # (K, D)
            out[mask] = (self.vision if encoder is None else encoder)(present, film)  # (K, P, D)
        out = out + self.camera_embed[:n, None, :] + self.role_embed[role]
        return out.reshape(b, n * p, -1)

    def _encode_memory(self, frames: torch.Tensor, mask: torch.Tensor,
                       cond: torch.Tensor | None = None) -> torch.Tensor:
        """frames (B, N, T, 3, s, s), mask (B, N, T) -> (B, N * T * m, D): m pooled tokens per past frame."""
        b, n, t = mask.shape
        m = self.config.memory_tokens_per_frame
        out = frames.new_zeros(b, n, t, m, self.config.decoder.hidden_size)
        present = frames[mask]                                                      # (K, 3, s, s)
        if present.shape[0]:
            film = cond[:, None, None].expand(b, n, t, -1)[mask] if cond is not None else None
            grid = self.config.vision.grid_tokens(frames.shape[-1])
            out[mask] = VisionEncoder.pool_tokens(self.vision(present, film)[:, :grid], m)  # (K, m, D)
        time = self.memory_time_embed[self.config.max_memory_frames - t:]           # oldest first, newest last
        out = out + time[None, None, :, None, :] + self.camera_embed[:n, None, None, :] + self.role_embed[2]
        return out.reshape(b, n * t * m, -1)

    def _film_condition(self, text: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """text (B, L, D) -> (B, D): mean embedding of the tokens FiLM reads. With film_source 'subtask' that is
        the subtask (what to do now: one object named, where the task names two), else the task, else all."""
        valid = batch['text_mask']
        if self.config.vision.film_source == 'subtask' and 'text_segments' in batch:
            seg = batch['text_segments']
            subtask, task = valid & (seg == SEGMENT_SUBTASK), valid & (seg == SEGMENT_TASK)
            has_sub, has_task = subtask.any(1, keepdim=True), task.any(1, keepdim=True)
            valid = torch.where(has_sub, subtask, torch.where(has_task, task, valid))
        weights = valid.to(text.dtype)[..., None]
        return (text * weights).sum(1) / weights.sum(1).clamp(min=1)

    def _embed_text(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """-> text embeddings (B, L, D) and the FiLM condition (B, D), each None when absent."""
        if 'text_ids' not in batch:
            return None, None
        text = self.embed_tokens(batch['text_ids']) * self.config.decoder.hidden_size ** 0.5     # Gemma scaling
        # FiLM input: mean of the prompt's token embeddings (dropped ones out)
        return text, self._film_condition(text, batch) if self.vision.conditioned else None

    def embed_prefix(self, batch: dict[str, torch.Tensor],
                     image_tokens_out: list | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The prompt as embeddings (B, Lp, D) and a validity mask (B, Lp). Components absent from the batch
        (missing keys) contribute no tokens at all. The current images' tokens (B, N * P, D) are appended to
        `image_tokens_out` if given (the vision goal head reads them)."""
        parts, masks = [], []
        text, cond = self._embed_text(batch)
        if 'images' in batch:
            parts.append(self._encode_images(batch['images'], batch['image_mask'], 0, cond))
            masks.append(batch['image_mask'].repeat_interleave(self.config.vision.tokens_per_image, dim=1))
            if image_tokens_out is not None:
                image_tokens_out.append(parts[-1])
        if 'subgoal_images' in batch:
            parts.append(self._encode_images(batch['subgoal_images'], batch['subgoal_mask'], 1, cond))
            masks.append(batch['subgoal_mask'].repeat_interleave(self.config.vision.tokens_per_image, dim=1))
        if 'memory_images' in batch:
            parts.append(self._encode_memory(batch['memory_images'], batch['memory_mask'], cond))
            masks.append(batch['memory_mask'].flatten(1).repeat_interleave(self.config.memory_tokens_per_frame, 1))
        if text is not None:
            parts.append(text)
            masks.append(batch['text_mask'])
        state = self.state_proj(batch['state'])[:, None, :]                        # (B, 1, D), always present
        parts.append(state)
        masks.append(torch.ones_like(batch['state'][:, :1], dtype=torch.bool))
        return pack_tokens(torch.cat(parts, dim=1), torch.cat(masks, dim=1))

    def _camera_summaries(self, image_tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """image tokens (B, N * P, D), mask (B, N) -> (B, max_cameras * D): one summary token per camera slot (the
        keypoint token if the encoder has one, else the mean of the grid), zeros for absent cameras."""
        b, n = mask.shape
        per_camera = image_tokens.view(b, n, self.config.vision.tokens_per_image, -1)
        has_keypoints = self.config.vision.kind == 'conv' and self.config.vision.keypoints
        summary = per_camera[:, :, -1] if has_keypoints else per_camera.mean(2)              # (B, N, D)
        summary = summary * mask[..., None].to(summary.dtype)
        return F.pad(summary, (0, 0, 0, self.config.max_cameras - n)).flatten(1)           # (B, max_cameras * D)

    def vision_goal(self, image_tokens: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """image tokens (B, N * P, D) -> predicted goal state (B, Ds) from the camera summaries (with
        vision_goal_reads_memory, also the memory keyframe's, zeros where a sample has no memory, and the subtask's
        text condition; with vision_goal_reads_subgoal, the subgoal images' through their own encoder) and the state;
        or, without vision_goal_reads_state, the state plus a displacement from the summaries alone."""
        summary = self._camera_summaries(image_tokens, batch['image_mask'])
        cond = None   # the subtask's text condition, embedded once for the keyframe and subgoal paths
        if self.config.vision_goal_reads_memory or self.config.vision_goal_reads_subgoal:
            _, cond = self._embed_text(batch)
        if self.config.vision_goal_reads_memory:
            key = torch.zeros_like(summary)
            if 'memory_keyframe' in batch and 'memory_mask' in batch:
                key_mask = batch['memory_mask'].any(-1)                                     # (B, N'): dropout too
                key_tokens = self._encode_images(batch['memory_keyframe'], key_mask, 0, cond,
                                                 getattr(self, 'keyframe_vision', None))
                key = self._camera_summaries(key_tokens, key_mask)
            text = cond if cond is not None else summary.new_zeros(summary.shape[0], self.config.decoder.hidden_size)
            summary = torch.cat([summary, key, text], dim=1)
        if self.config.vision_goal_reads_subgoal:
            summary = torch.cat([summary, self._subgoal_summaries(batch, cond)], dim=1)
        if not self.config.vision_goal_reads_state:   # the displacement to the goal, seen in the images
            return batch['state'] + self.vision_goal_head(summary)
        return self.vision_goal_head(torch.cat([summary, batch['state']], dim=1))

    def _subgoal_summaries(self, batch: dict[str, torch.Tensor], cond: torch.Tensor | None) -> torch.Tensor:
        """(B, max_cameras * D): the subgoal images' camera summaries through `subgoal_vision` (FiLM'd by `cond`,
        the subtask's text condition), zeros for absent (or dropped) ones."""
        b, d = batch['state'].shape[0], self.config.decoder.hidden_size
        if 'subgoal_images' not in batch or 'subgoal_mask' not in batch:
            return batch['state'].new_zeros(b, self.config.max_cameras * d)
        tokens = self._encode_images(batch['subgoal_images'], batch['subgoal_mask'], 1, cond, self.subgoal_vision)
        return self._camera_summaries(tokens, batch['subgoal_mask'])

    def _goal_error(self, pred: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Masked MSE to the goal state. Samples whose subtask prompt dropout removed count too: the heads learn
        the mean of the plausible goals there, which the goal-conditioned expert then reads as "unsure" (counting
        only the samples that still name the subtask left those estimates arbitrary, and the expert worse:
        docs/data.md, session 8)."""
        mask = batch['goal_mask'].to(pred.dtype)                                            # (B, Ds) robot's dims
        return ((pred - batch['goal_state']) ** 2 * mask).sum() / mask.sum().clamp(min=1)

    def pretrained_encoder_prefixes(self) -> tuple[str, ...]:
        """Parameter-name prefixes of what `vision_goal_loss` trains in the image encoder (the conv stages up to
        the keypoint maps, the keypoint layers, the projector) and its head: the parts goal pretraining fits."""
        prefixes = ['vision.projector', 'vision_goal_head']
        if self.config.vision.kind == 'conv':
            conv = self.vision.conv
            last = conv.keypoint_stage if self.config.vision.keypoints else len(conv.stages) - 1
            prefixes += [f'vision.conv.stages.{i}.' for i in range(last + 1)]
            prefixes += (['vision.conv.keypoint_maps', 'vision.conv.keypoint_proj'] if self.config.vision.keypoints
                         else ['vision.conv.out', 'vision.conv.position'])   # the grid's mean is the summary
        else:
            prefixes.append('vision.siglip')
        return tuple(prefixes)

    def goal_path_prefixes(self) -> tuple[str, ...]:
        """Parameter-name prefixes of what only the image-encoder goal estimate uses: its head and, with
        keyframe_encoder, the keyframe's encoder. Training only these (`train vla --goal-head-only`) changes the
        goal input the expert reads and nothing else."""
        return ('vision_goal_head',) + (('keyframe_vision',) if self.config.keyframe_encoder else ()) + \
            (('subgoal_vision',) if self.config.vision_goal_reads_subgoal else ())

    def vision_goal_loss(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Goal-state regression through the image encoder only (no backbone, no expert): steps ~8x cheaper
        than the VLA's, used to pretrain the encoder on where the subtask's object is before VLA training."""
        _, cond = self._embed_text(batch)
        tokens = self._encode_images(batch['images'], batch['image_mask'], 0, cond)
        loss = self._goal_error(self.vision_goal(tokens, batch), batch)
        return {'vision_goal_loss': loss, 'loss': loss}

    def run_backbone(self, prefix: torch.Tensor, prefix_mask: torch.Tensor, fast_ids: torch.Tensor | None = None,
                     fast_mask: torch.Tensor | None = None):
        """Backbone over [prefix, FAST tokens]. Returns the prefix cache and the FAST positions' hidden states."""
        b, lp, _ = prefix.shape
        x, valid = prefix, prefix_mask
        # Prefix-LM mask: key j visible to query i if j is valid and (j in prefix, or j is a FAST token <= i).
        if fast_ids is not None:
            x = torch.cat([prefix, self.embed_tokens(fast_ids) * self.config.decoder.hidden_size ** 0.5], dim=1)
            valid = torch.cat([prefix_mask, fast_mask], dim=1)
        lt = x.shape[1]
        is_prefix = torch.arange(lt, device=x.device) < lp
        causal = torch.ones(lt, lt, dtype=torch.bool, device=x.device).tril()
        structure = is_prefix[None, :] | (causal & ~is_prefix[:, None])               # (Lt, Lt)
        mask = (structure[None] & valid[:, None, :])[:, None]                        # (B, 1, Lt, Lt)
        positions = valid.long().cumsum(1) - 1
        cos, sin = rotary_cos_sin(positions.clamp(min=0), self.config.decoder.head_dim, self.config.decoder.rope_theta)
        keys, values = [], []
        for layer in self.layers:
            x, (k, v) = layer(x, cos, sin, mask)
            keys.append(k[:, :, :lp])
            values.append(v[:, :, :lp])
        cache = PrefixCache(keys, values, prefix_mask, prefix_mask.long().sum(1))
        if hasattr(self, 'goal_head'):   # packed prefix: the state token is each row's last valid one
            cache.state_hidden = self.norm(x[torch.arange(b, device=x.device), cache.next_position - 1])
        fast_hidden = self.norm(x[:, lp:]) if fast_ids is not None else None          # (B, F, D)
        return cache, fast_hidden

    def encode_prefix(self, batch: dict[str, torch.Tensor]) -> PrefixCache:
        """Run once per chunk: the KV cache the denoising steps read (and the goal input, if conditioned)."""
        image_tokens: list[torch.Tensor] = []
        prefix, prefix_mask = self.embed_prefix(batch, image_tokens if self.config.goal_conditioning else None)
        cache = self.run_backbone(prefix, prefix_mask)[0]
        if self.config.goal_conditioning:
            vision_goal = self.vision_goal(image_tokens[0], batch) if image_tokens else None
            self.attach_goal(cache, batch, vision_goal)
        return cache

    def attach_goal(self, cache: PrefixCache, batch: dict[str, torch.Tensor],
                    vision_goal: torch.Tensor | None) -> None:
        """cache.goal_input = [goal estimate, state] (B, 2 Ds), detached: the image encoder's prediction (zeros
        without images) or, training with a 'goal_state' in the batch, for a goal_teacher_forcing fraction of
        samples the true goal plus goal_noise. Only the goal losses train the head."""
        cfg = self.config
        goal = vision_goal if vision_goal is not None else torch.zeros_like(batch['state'])
        if self.training and 'goal_state' in batch and cfg.goal_teacher_forcing > 0:
            true = batch['goal_state'] + cfg.goal_noise * torch.randn_like(batch['goal_state'])
            forced = torch.rand(goal.shape[0], 1, device=goal.device) < cfg.goal_teacher_forcing
            goal = torch.where(forced, true * batch['goal_mask'], goal)
        cache.goal_input = torch.cat([goal, batch['state']], dim=1).detach()

    # ----------------------------------------------------------------------------------------------- expert
    def predict_velocity(self, cache: PrefixCache, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x_t (B, H, A) noisy actions at flow time t (B,), or per action token (B, H) (training-time RTC: the
        frozen rows at t = 0) -> velocity u (B, H, A) ~ noise - actions."""
        b, h, _ = x_t.shape
        x = self.action_in_proj(x_t)                                                # (B, H, E)
        cond = self.time_mlp(sinusoidal_embedding(t, self.config.expert.hidden_size).to(x.dtype))  # (B[, H], E)
        if cache.goal_input is not None:                                            # where the subtask ends
            goal = self.goal_cond_mlp(cache.goal_input)                             # (B, E)
            cond = cond + (goal[:, None] if cond.ndim == 3 else goal)
        if cache.suffix is None or cache.suffix['horizon'] != h:   # same for every denoising step of a chunk
            positions = cache.next_position[:, None] + torch.arange(h, device=x.device)[None]
            cos, sin = rotary_cos_sin(positions, self.config.decoder.head_dim, self.config.decoder.rope_theta)
            mask = torch.cat([cache.mask, cache.mask.new_ones(b, h)], dim=1)[:, None, None, :]  # (B, 1, 1, Lp + H)
            cache.suffix = {'horizon': h, 'cos': cos, 'sin': sin, 'mask': mask}
        cos, sin, mask = cache.suffix['cos'], cache.suffix['sin'], cache.suffix['mask']
        for layer, k, v in zip(self.expert_layers, cache.keys, cache.values):
            x = layer(x, cond, cos, sin, mask, k, v)
        x, _ = self.expert_norm(x, cond)
        return self.action_out_proj(x)

    # ----------------------------------------------------------------------------------------------- training
    def drop_prompt_components(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Training-time prompt dropout: remove whole components from random samples by masking their tokens."""
        p = self.config.dropout
        batch = dict(batch)
        b = batch['state'].shape[0]
        dev = batch['state'].device

        def keep(prob: float) -> torch.Tensor:
            return torch.rand(b, device=dev) >= prob

        if 'text_segments' in batch:
            seg = batch['text_segments']
            drop = torch.zeros_like(batch['text_mask'])
            for segment, prob in ((SEGMENT_TASK, p.task), (SEGMENT_SUBTASK, p.subtask), (SEGMENT_METADATA, p.metadata)):
                drop |= (seg == segment) & ~keep(prob)[:, None]
            batch['text_mask'] = batch['text_mask'] & ~drop
        if 'subgoal_mask' in batch:
            batch['subgoal_mask'] = batch['subgoal_mask'] & keep(p.subgoal)[:, None]
        if 'memory_mask' in batch:
            batch['memory_mask'] = batch['memory_mask'] & keep(p.memory)[:, None, None]
        if 'image_mask' in batch and batch['image_mask'].shape[1] > 1:
            extra = torch.rand(batch['image_mask'].shape, device=dev) < p.extra_camera
            extra[:, 0] = False
            batch['image_mask'] = batch['image_mask'] & ~extra
        return batch

    def sample_time(self, b: int, device) -> torch.Tensor:
        beta = torch.distributions.Beta(torch.tensor(self.config.time_beta_alpha),
                                        torch.tensor(self.config.time_beta_beta))
        return (beta.sample((b,)) * 0.999 + 0.001).to(device)

    def sample_frozen_rows(self, b: int, h: int, device) -> torch.Tensor:
        """Training-time RTC: (B, H) bool, True on the first d rows of a sample's chunk, d ~ U{1..rtc_max_delay}
        for a fraction rtc_train_prob of the samples and 0 for the rest."""
        cfg = self.config
        delay = torch.randint(1, cfg.rtc_max_delay + 1, (b,), device=device)
        delay = torch.where(torch.rand(b, device=device) < cfg.rtc_train_prob, delay, torch.zeros_like(delay))
        return torch.arange(h, device=device)[None, :] < delay[:, None]

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Training losses: flow matching (expert) + FAST cross-entropy (backbone) when batch has 'fast_ids'
        + the goal-state regressions (backbone and image-encoder heads) when the model has goal heads and the
        batch a 'goal_state'."""
        cfg = self.config
        if self.training:
            batch = self.drop_prompt_components(batch)
        actions = batch['actions']                                                  # (B, H, A) normalised
        b = actions.shape[0]
        goal_heads = hasattr(self, 'goal_head') and 'goal_state' in batch
        image_tokens: list[torch.Tensor] = []
        prefix, prefix_mask = self.embed_prefix(batch, image_tokens if goal_heads or cfg.goal_conditioning else None)
        use_fast = 'fast_ids' in batch and cfg.fast_loss_weight > 0
        fast_in = fast_mask = None
        if use_fast:
            # input [<boa>, f1..f_{n-1}], target [f1..fn, <eoa>] (processing appends <eoa> and pads with -100)
            targets = batch['fast_ids']                                             # (B, F) sub-vocab ids / -100
            bos = torch.full_like(targets[:, :1], cfg.fast_bos_token)
            shifted = targets[:, :-1].clamp(min=0) + cfg.fast_offset
            fast_in = torch.cat([bos, shifted], dim=1)
            fast_mask = torch.cat([torch.ones_like(bos, dtype=torch.bool), targets[:, :-1] >= 0], dim=1)
        cache, fast_hidden = self.run_backbone(prefix, prefix_mask, fast_in, fast_mask)
        state_hidden = cache.state_hidden                                           # (B, D) or None
        vision_goal = self.vision_goal(image_tokens[0], batch) if image_tokens else None
        if cfg.goal_conditioning:
            self.attach_goal(cache, batch, vision_goal)
        if cfg.knowledge_insulation:
            cache = cache.detached()                                                # no flow gradient to backbone

        action_mask = batch.get('action_mask')
        k = cfg.flow_samples if self.training else 1
        if k > 1:   # k noise/time draws per sample against one prefix: repeat the cache, not the backbone
            cache = cache.repeated(k)
            actions = actions.repeat_interleave(k, dim=0)                           # (k B, H, A)
            action_mask = action_mask.repeat_interleave(k, dim=0) if action_mask is not None else None
            b = b * k
        noise = torch.randn_like(actions)
        t = self.sample_time(b, actions.device)                                     # (B,)
        if self.training and cfg.rtc_train_prob > 0:
            # training-time RTC: the frozen rows are given clean (t = 0) and carry no loss
            frozen = self.sample_frozen_rows(b, actions.shape[1], actions.device)   # (B, H)
            t = torch.where(frozen, torch.zeros_like(frozen, dtype=t.dtype), t[:, None])  # (B, H)
            free = (~frozen)[..., None].to(actions.dtype)                           # (B, H, 1)
            action_mask = free * (action_mask if action_mask is not None else torch.ones_like(actions))
        t_b = t[..., None] if t.ndim == 2 else t[:, None, None]
        x_t = t_b * noise + (1 - t_b) * actions
        # the frozen rows off course: a heading error along them (padded dimensions too: no loss reads them, and
        # at inference they hold zeros)
        if t.ndim == 2 and cfg.rtc_prefix_noise > 0:
            rows = frozen.to(actions.dtype)                                         # (B, H)
            ramp = rows.cumsum(1) / rows.sum(1, keepdim=True).clamp(min=1) * rows   # (i + 1) / d on the prefix
            x_t = x_t + ramp[..., None] * cfg.rtc_prefix_noise * torch.randn_like(actions[:, :1])
        u = self.predict_velocity(cache, x_t, t)
        err = (u - (noise - actions)) ** 2
        if action_mask is not None:
            err = err * action_mask
            flow = err.sum() / action_mask.expand_as(err).sum().clamp(min=1)
        else:
            flow = err.mean()
        losses = {'flow_loss': flow}
        loss = cfg.flow_loss_weight * flow
        if use_fast:
            w = self.embed_tokens.weight[cfg.fast_offset: cfg.fast_offset + cfg.fast_vocab_size + 1]  # + <eoa>
            logits = fast_hidden @ w.t()                                            # (B, F, fast_vocab + 1)
            ce = F.cross_entropy(logits.flatten(0, 1).float(), batch['fast_ids'].flatten(), ignore_index=-100)
            losses['fast_loss'] = ce
            loss = loss + cfg.fast_loss_weight * ce
        if goal_heads and state_hidden is not None:
            goal = self._goal_error(self.goal_head(state_hidden), batch)
            losses['goal_loss'] = goal
            loss = loss + cfg.goal_loss_weight * goal
            if vision_goal is not None:
                vision_goal_loss = self._goal_error(vision_goal, batch)
                losses['vision_goal_loss'] = vision_goal_loss
                loss = loss + cfg.goal_loss_weight * vision_goal_loss
        losses['loss'] = loss
        return losses

    # ----------------------------------------------------------------------------------------------- FAST decoding
    @torch.no_grad()
    def generate_fast(self, batch: dict[str, torch.Tensor], max_tokens: int | None = None) -> list[list[int]]:
        """Greedy autoregressive FAST tokens from the backbone (pi0-FAST style inference, for comparison).
        Recomputes the sequence each step: simple, and only used for evaluation."""
        cfg = self.config
        prefix, prefix_mask = self.embed_prefix(batch)
        b = prefix.shape[0]
        w = self.embed_tokens.weight[cfg.fast_offset: cfg.fast_offset + cfg.fast_vocab_size + 1]
        tokens = torch.full((b, 1), cfg.fast_bos_token, dtype=torch.long, device=prefix.device)
        results: list[list[int] | None] = [None] * b
        generated: list[list[int]] = [[] for _ in range(b)]
        for _ in range(max_tokens or cfg.max_fast_tokens):
            _, hidden = self.run_backbone(prefix, prefix_mask, tokens, torch.ones_like(tokens, dtype=torch.bool))
            nxt = (hidden[:, -1] @ w.t()).argmax(-1)                                 # (B,)
            for i, tok in enumerate(nxt.tolist()):
                if results[i] is None:
                    if tok == cfg.fast_eos_id:
                        results[i] = generated[i]
                    else:
                        generated[i].append(tok)
            if all(r is not None for r in results):
                break
            tokens = torch.cat([tokens, (nxt.clamp(max=cfg.fast_vocab_size - 1) + cfg.fast_offset)[:, None]], dim=1)
        return [r if r is not None else g for r, g in zip(results, generated)]


def count_parameters(model: nn.Module) -> dict[str, int]:
    groups = {'vision': 0, 'backbone': 0, 'expert': 0}
    for name, p in model.named_parameters():
        if name.startswith('vision.'):
            groups['vision'] += p.numel()
        elif name.startswith(('expert_', 'action_', 'time_mlp')):
            groups['expert'] += p.numel()
        else:
            groups['backbone'] += p.numel()
    groups['total'] = sum(groups.values())
    return groups
