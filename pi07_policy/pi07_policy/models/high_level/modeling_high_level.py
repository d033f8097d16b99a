"""High-level decoder: images + a text prompt (prefix, bidirectional) -> target text (causal), greedy decoding
with a KV cache. The Gemma layers are the VLA backbone's (`DecoderLayer`), the LM head is tied to the embedding.

    sequence = [image tokens (N * P) | prompt tokens | <bos> target tokens]
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..common.layers import RMSNorm, rotary_cos_sin
from ..common.text_tokenizer import BOS_ID, EOS_ID
from ..common.vision import VisionEncoder
from ..vla.modeling_vla import DecoderLayer
from .configuration_high_level import HighLevelConfig


class HighLevelModel(nn.Module):
    def __init__(self, config: HighLevelConfig):
        super().__init__()
        self.config = config
        d = config.decoder.hidden_size
        self.vision = VisionEncoder(config.vision, d)
        self.camera_embed = nn.Parameter(torch.randn(config.max_cameras, d) * 0.02)
        self.embed_tokens = nn.Embedding(config.vocab_size, d)
        self.layers = nn.ModuleList(DecoderLayer(config) for _ in range(config.decoder.num_layers))
        self.norm = RMSNorm(d)
        for name, p in self.named_parameters():
            if not name.startswith('vision.siglip') and p.ndim == 2:
                nn.init.normal_(p, std=0.02)

    def embed_prefix(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """-> prefix (B, Lp, D), mask (B, Lp): images (absent ones masked and not encoded) then prompt text."""
        parts, masks = [], []
        if 'images' in batch:
            pixels, mask = batch['images'], batch['image_mask']                      # (B, N, 3, S, S), (B, N)
            b, n = mask.shape
            p = self.config.vision.tokens_per_image
            tokens = pixels.new_zeros(b, n, p, self.config.decoder.hidden_size)
            if mask.any():
                tokens[mask] = self.vision(pixels[mask])
            parts.append((tokens + self.camera_embed[:n, None]).reshape(b, n * p, -1))
            masks.append(mask.repeat_interleave(p, dim=1))
        parts.append(self.embed_tokens(batch['prompt_ids']) * self.config.decoder.hidden_size ** 0.5)
        masks.append(batch['prompt_mask'])
        return torch.cat(parts, 1), torch.cat(masks, 1)

    def _run(self, x, positions, mask, past=None):
        cos, sin = rotary_cos_sin(positions, self.config.decoder.head_dim, self.config.decoder.rope_theta)
        new_past = []
        for i, layer in enumerate(self.layers):
            x, kv = layer(x, cos, sin, mask, None if past is None else past[i])
            new_past.append(kv)
        return self.norm(x), new_past

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden @ self.embed_tokens.weight.t()                                  # (B, T, vocab)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Teacher-forced CE on the target tokens. batch['target_ids'] (B, T) = [t1..tn, <eos>, -100 padding]."""
        if self.training and self.config.image_dropout > 0 and 'image_mask' in batch:
            mask = batch['image_mask']
            keep = torch.rand(mask.shape[0], device=mask.device) >= self.config.image_dropout
            batch = {**batch, 'image_mask': batch['image_mask'] & keep[:, None]}
        prefix, prefix_mask = self.embed_prefix(batch)
        targets = batch['target_ids']
        lp, t = prefix.shape[1], targets.shape[1]
        inputs = torch.cat([torch.full_like(targets[:, :1], BOS_ID), targets[:, :-1].clamp(min=0)], 1)
        input_mask = torch.cat([torch.ones_like(targets[:, :1], dtype=torch.bool), targets[:, :-1] >= 0], 1)
        x = torch.cat([prefix, self.embed_tokens(inputs) * self.config.decoder.hidden_size ** 0.5], 1)
        valid = torch.cat([prefix_mask, input_mask], 1)                                # (B, Lp + T)
        is_prefix = torch.arange(lp + t, device=x.device) < lp
        causal = torch.ones(lp + t, lp + t, dtype=torch.bool, device=x.device).tril()
        structure = is_prefix[None, :] | (causal & ~is_prefix[:, None])
        mask = (structure[None] & valid[:, None, :])[:, None]
        positions = (valid.long().cumsum(1) - 1).clamp(min=0)
        hidden, _ = self._run(x, positions, mask)
        logits = self.logits(hidden[:, lp:])
        loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=-100)
        return {'loss': loss, 'text_loss': loss.detach()}

    @torch.no_grad()
    def generate(self, batch: dict[str, torch.Tensor], max_tokens: int | None = None) -> list[list[int]]:
        """Greedy decoding with a KV cache: the prefix once, then one token per step. -> list of id lists."""
        prefix, prefix_mask = self.embed_prefix(batch)
        b = prefix.shape[0]
        positions = (prefix_mask.long().cumsum(1) - 1).clamp(min=0)
        mask = prefix_mask[:, None, None, :].expand(b, 1, prefix.shape[1], prefix.shape[1])
        _, past = self._run(prefix, positions, mask)
        next_pos = prefix_mask.long().sum(1)                                          # (B,)
        valid = prefix_mask
        token = torch.full((b,), BOS_ID, dtype=torch.long, device=prefix.device)
        out: list[list[int]] = [[] for _ in range(b)]
        done = [False] * b
        for _ in range(max_tokens or self.config.max_target_tokens):
            valid = torch.cat([valid, valid.new_ones(b, 1)], 1)
            x = self.embed_tokens(token)[:, None] * self.config.decoder.hidden_size ** 0.5
            hidden, past = self._run(x, next_pos[:, None], valid[:, None, None, :], past)
            token = self.logits(hidden[:, -1]).argmax(-1)
            next_pos = next_pos + 1
            for i, tok in enumerate(token.tolist()):
                if not done[i]:
                    if tok == EOS_ID:
                        done[i] = True
                    else:
                        out[i].append(tok)
            if all(done):
                break
        return out
