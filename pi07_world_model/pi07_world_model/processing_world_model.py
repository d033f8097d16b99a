"""Pre- and post-processing of the world model: text tokenizer, metadata indices, images <-> tensors, batches.

The model itself only sees tensors; this module turns the dict-level inputs (`{'images': {cam: uint8 HxWx3},
'subtask', 'task', 'metadata'}`) into them, applies pi0.7-style prompt dropout when training, and turns sampled
tensors back into uint8 images.
"""
from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tokenizers import Tokenizer

from pi07_policy.models.common.text_tokenizer import BOS, PAD, train_text_tokenizer

from .configuration_world_model import (
    CONTROL_MODE_VALUES,
    QUALITY_VALUES,
    SPEED_VALUES,
    WorldModelConfig,
)

TOKENIZER_FILE = 'text_tokenizer.json'


# ---------------------------------------------------------------------------------------------------------------
# Text (the byte-level BPE tokenizer is pi07_policy's, trained on the project's corpus: any string encodes)
# ---------------------------------------------------------------------------------------------------------------

def render_prompt(task: str | None, subtask: str | None) -> str:
    """The text the world model reads; an absent (None or empty) component is left out entirely."""
    parts = []
    if task:
        parts.append(f'Task: {task.strip()}.')
    if subtask:
        parts.append(f'Subtask: {subtask.strip()}.')
    return ' '.join(parts)


def train_tokenizer(texts: Iterable[str], vocab_size: int = 1024) -> Tokenizer:
    """The shared pi07 text tokenizer fitted on the given texts (prompts are rendered as the model reads them)."""
    texts = list(texts)
    return train_text_tokenizer([*texts, *(render_prompt(None, t) for t in texts)], vocab_size=vocab_size)


# ---------------------------------------------------------------------------------------------------------------
# Metadata: EpisodeMetadata-like dict (or object) -> 4 indices, 0 = unspecified
# ---------------------------------------------------------------------------------------------------------------

METADATA_FIELDS = ('speed', 'quality', 'mistake', 'control_mode')


def metadata_indices(metadata: Mapping[str, Any] | Any | None) -> list[int]:
    """[speed, quality, mistake, control_mode] indices. Accepts a dict or an object with those attributes
    (e.g. a pi07_msgs EpisodeMetadata); missing or unspecified values (speed/quality 0, mistake -1 or None,
    control_mode '') give 0. Unknown values raise, so a typo does not silently become 'unspecified'."""
    if metadata is None:
        return [0, 0, 0, 0]
    get = metadata.get if isinstance(metadata, Mapping) else lambda k, d=None: getattr(metadata, k, d)
    out = []
    speed = get('speed', None)
    out.append(0 if speed in (None, 0) else _index(SPEED_VALUES, int(speed), 'speed'))
    quality = get('quality', None)
    out.append(0 if quality in (None, 0) else _index(QUALITY_VALUES, int(quality), 'quality'))
    mistake = get('mistake', None)
    if mistake is None or (not isinstance(mistake, bool) and int(mistake) < 0):
        out.append(0)
    else:
        out.append(1 + int(bool(mistake)))
    mode = get('control_mode', None)
    out.append(0 if not mode else _index(CONTROL_MODE_VALUES, str(mode), 'control_mode'))
    return out


def _index(values: Sequence, value, name: str) -> int:
    if value not in values:
        raise ValueError(f'metadata {name}={value!r} is not one of {list(values)} (or unspecified)')
    return 1 + values.index(value)


# ---------------------------------------------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------------------------------------------

def image_to_tensor(image, size: int) -> torch.Tensor:
    """uint8 HxWx3 (numpy or tensor), or float 3xHxW / HxWx3 in [0, 1] -> float (3, size, size) in [-1, 1]."""
    x = torch.as_tensor(np.asarray(image) if not isinstance(image, torch.Tensor) else image)
    if x.ndim != 3 or 3 not in (x.shape[0], x.shape[-1]):
        raise ValueError(f'expected an HxWx3 or 3xHxW image, got shape {tuple(x.shape)}')
    if x.dtype == torch.uint8:
        x = x.permute(2, 0, 1).float() / 255.0 if x.shape[-1] == 3 else x.float() / 255.0
    else:
        x = x.float()
        if x.shape[0] != 3:
            x = x.permute(2, 0, 1)
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x[None], size=(size, size), mode='bilinear', antialias=True, align_corners=False)[0]
    return x.clamp(0.0, 1.0) * 2.0 - 1.0


def tensor_to_uint8(x: torch.Tensor) -> np.ndarray:
    """(3, S, S) in [-1, 1] -> uint8 SxSx3."""
    return ((x.clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8).permute(1, 2, 0).contiguous().cpu().numpy()


# ---------------------------------------------------------------------------------------------------------------
# The processor
# ---------------------------------------------------------------------------------------------------------------

class WorldModelProcessor:
    """Tokenizer + conversions. Saved with the checkpoint as tokenizer.json."""

    def __init__(self, config: WorldModelConfig, tokenizer: Tokenizer):
        self.config = config
        self.tokenizer = tokenizer
        vocab = tokenizer.get_vocab_size()
        if vocab > config.text.vocab_size:
            raise ValueError(f'tokenizer has {vocab} tokens but the text encoder embeds only '
                             f'{config.text.vocab_size} (config.text.vocab_size)')
        self.pad_id = tokenizer.token_to_id(PAD)
        self.bos_id = tokenizer.token_to_id(BOS)
        if self.pad_id is None or self.bos_id is None:
            raise ValueError(f'tokenizer lacks the special tokens {PAD} / {BOS}')

    @classmethod
    def from_texts(cls, config: WorldModelConfig, texts: Iterable[str]) -> WorldModelProcessor:
        return cls(config, train_tokenizer(texts, vocab_size=config.text.vocab_size))

    def tokenizer_json(self) -> str:
        """The tokenizer as one json string (saved in the checkpoint as text_tokenizer.json)."""
        return self.tokenizer.to_str()

    @classmethod
    def from_tokenizer_file(cls, config: WorldModelConfig, path: str | Path) -> WorldModelProcessor:
        try:
            tok = Tokenizer.from_file(str(path))
        except Exception as exc:  # tokenizers raises a bare Exception on malformed json
            raise ValueError(f'{path} is not a valid tokenizers file: {exc}') from exc
        return cls(config, tok)

    # --- text ---------------------------------------------------------------------------------------------------
    def encode_text(self, task: str | None, subtask: str | None) -> tuple[list[int], list[bool]]:
        """BOS + tokens of the prompt, truncated and padded to config.text.max_tokens. With text.keep_subtask a
        prompt too long loses the end of its task (the subtask, what this call is about, stays whole)."""
        L = self.config.text.max_tokens
        text = render_prompt(task, subtask)
        ids = [self.bos_id] + (self.tokenizer.encode(text).ids if text else [])
        if len(ids) > L and self.config.text.keep_subtask and task and subtask:
            tail = self.tokenizer.encode(' ' + render_prompt(None, subtask)).ids
            head = [self.bos_id] + self.tokenizer.encode(render_prompt(task, None)).ids
            ids = head[:max(1, L - len(tail))] + tail
        ids = ids[:L]
        mask = [True] * len(ids) + [False] * (L - len(ids))
        return ids + [self.pad_id] * (L - len(ids)), mask

    # --- cameras ------------------------------------------------------------------------------------------------
    def camera_order(self, names: Iterable[str]) -> list[str]:
        names = set(names)
        unknown = names - set(self.config.camera_names)
        if unknown:
            raise ValueError(f'unknown camera(s) {sorted(unknown)}; this world model knows '
                             f'{list(self.config.camera_names)}')
        if not names:
            raise ValueError('no camera images given')
        return [c for c in self.config.camera_names if c in names]

    # --- batches ------------------------------------------------------------------------------------------------
    def collate(self, samples: Sequence[Mapping[str, Any]], train: bool = False,
                rng: random.Random | None = None) -> dict[str, torch.Tensor]:
        """Samples {'images': {cam: img}, 'subgoal_images': {cam: img} (optional), 'subtask', 'task',
        'metadata', 'keyframe_images': {cam: img} (optional; read where config.reads_keyframe)} -> batch tensors.
        Every sample must have the same cameras in 'images'. With train=True each conditioning component is
        dropped at random (config.drop_prob_*), as in pi0.7."""
        cfg, S = self.config, self.config.image_size
        rng = rng or random   # the global stream, seeded by the training loop (seed + rank)
        cameras = self.camera_order(samples[0]['images'])
        images, subgoals, present, keep, ids, masks, meta = [], [], [], [], [], [], []
        keyframes, keyframe_keep = [], []
        for s in samples:
            if set(s['images']) != set(cameras):
                raise ValueError(f'all samples of a batch need the same cameras: {sorted(s["images"])} vs {cameras}')
            images.append(torch.stack([image_to_tensor(s['images'][c], S) for c in cameras]))
            goal = s.get('subgoal_images') or {}
            subgoals.append(torch.stack([image_to_tensor(goal[c], S) if c in goal else torch.zeros(3, S, S)
                                         for c in cameras]))
            present.append([c in goal for c in cameras])
            task, subtask = s.get('task'), s.get('subtask')
            m = metadata_indices(s.get('metadata'))
            k = [True] * len(cameras)
            if train:
                task = None if rng.random() < cfg.drop_prob_task else task
                subtask = None if rng.random() < cfg.drop_prob_subtask else subtask
                m = [0 if rng.random() < cfg.drop_prob_metadata else v for v in m]
                k = [rng.random() >= cfg.drop_prob_image for _ in cameras]
            if cfg.reads_keyframe:
                frames = s.get('keyframe_images') or {}
                keyframes.append(torch.stack([image_to_tensor(frames[c], S) if c in frames else torch.zeros(3, S, S)
                                              for c in cameras]))
                drop = train and rng.random() < cfg.drop_prob_keyframe     # one coin: the memory is there or not
                keyframe_keep.append([c in frames and not drop for c in cameras])
            i, mk = self.encode_text(task, subtask)
            ids.append(i)
            masks.append(mk)
            meta.append(m)
            keep.append(k)
        batch = {
            'images': torch.stack(images),                                   # (B, V, 3, S, S) in [-1, 1]
            'subgoal_images': torch.stack(subgoals),                         # (B, V, 3, S, S)
            'subgoal_present': torch.tensor(present, dtype=torch.bool),      # (B, V)
            'image_keep': torch.tensor(keep, dtype=torch.bool),              # (B, V)
            'camera_ids': torch.tensor([cfg.camera_names.index(c) for c in cameras]),   # (V,)
            'text_ids': torch.tensor(ids, dtype=torch.long),                 # (B, L)
            'text_mask': torch.tensor(masks, dtype=torch.bool),              # (B, L)
            'metadata': torch.tensor(meta, dtype=torch.long),                # (B, 4)
        }
        if cfg.reads_keyframe:
            batch['keyframe_images'] = torch.stack(keyframes)                # (B, V, 3, S, S)
            batch['keyframe_keep'] = torch.tensor(keyframe_keep, dtype=torch.bool)   # (B, V)
        return batch

    def prepare_inference(self, observation: Mapping[str, Any],
                          device: torch.device | str = 'cpu') -> tuple[dict[str, torch.Tensor], list[str]]:
        """One observation dict -> (batch of one, camera order). Absent subtask/task/metadata are allowed."""
        if not observation.get('images'):
            raise ValueError("observation needs 'images': {camera: uint8 HxWx3}")
        batch = self.collate([{k: observation.get(k)
                               for k in ('images', 'subtask', 'task', 'metadata', 'keyframe_images')}])
        cameras = self.camera_order(observation['images'])
        return {k: v.to(device) for k, v in batch.items()}, cameras

    @staticmethod
    def to_uint8_dict(images: torch.Tensor, cameras: Sequence[str]) -> dict[str, np.ndarray]:
        """(V, 3, S, S) in [-1, 1] -> {cam: uint8 SxSx3}."""
        return {c: tensor_to_uint8(images[i]) for i, c in enumerate(cameras)}
