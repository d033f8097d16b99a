"""Per-robot input/output transforms for the VLA: everything between raw observations (dicts of numpy arrays
and strings, the openpi policy boundary) and the model's tensors. The model never sees robot units.

- images: uint8 HxWx3 -> float (3, S, S) in [-1, 1], one slot per camera name of the robot (missing -> masked)
- text:   'Speed: 2. Quality: 5. ...' + 'Task: ...' + 'Subtask: ...', each token tagged with its component
- state / actions: normalised per dimension (quantile q01/q99 -> [-1, 1], or mean/std), zero-padded to the
  model's dimensions; the action mask marks real dimensions and real time steps
- FAST: the target chunk's FAST tokens (+ end token), for the backbone's cross-entropy

`collate(samples)` turns dataset samples into a training batch; `observation_batch(obs)` makes a batch of one
for inference with only the components present (absent ones cost nothing).
"""
from __future__ import annotations

import json
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tokenizers import Tokenizer

from ..common.text_tokenizer import load_text_tokenizer, metadata_text, train_text_tokenizer
from ..fast import FASTTokenizer
from .configuration_vla import VLAConfig
from .modeling_vla import SEGMENT_METADATA, SEGMENT_SUBTASK, SEGMENT_TASK

TEXT_TOKENIZER_FILE = 'text_tokenizer.json'
PROCESSOR_FILE = 'processor.json'


@dataclass(frozen=True)
class RobotSpec:
    """What differs per robot (from its profile): camera slots, state/action sizes, normalisation mode."""

    camera_names: tuple[str, ...] = ('front', 'wrist')
    state_dim: int = 14
    action_dim: int = 14
    norm_mode: str = 'quantile'   # or 'mean_std'
    embodiment: str = 'generic'
    # Action dimensions the model predicts relative to the current state (openpi's delta actions): the model sees
    # action - state on them, and the state is added back at inference. Empty: every dimension is absolute.
    # Needs state dimension i to measure action dimension i (true for joint targets and the gantry's axes).
    delta_action_mask: tuple[bool, ...] = ()


# ------------------------------------------------------------------------------------------------ normalisation
def fit_norm_stats(values: np.ndarray) -> dict[str, list[float]]:
    """Per-dimension statistics of (N, D) values: mean, std, q01, q99."""
    values = np.asarray(values, np.float64).reshape(-1, np.shape(values)[-1])
    return {'mean': values.mean(0).tolist(), 'std': values.std(0).tolist(),
            'q01': np.quantile(values, 0.01, axis=0).tolist(), 'q99': np.quantile(values, 0.99, axis=0).tolist()}


def compute_norm_stats(samples: Iterable[Mapping[str, Any]], max_samples: int = 10000) -> dict[str, Any]:
    """Statistics of 'state' and 'actions' over dataset samples (the first `max_samples`)."""
    states, actions = [], []
    for i, s in enumerate(samples):
        if i >= max_samples:
            break
        states.append(np.asarray(s['state'], np.float64))
        actions.append(np.asarray(s['actions'], np.float64))
    return {'state': fit_norm_stats(np.stack(states)), 'actions': fit_norm_stats(np.concatenate(actions))}


class Normalizer:
    def __init__(self, stats: Mapping[str, Sequence[float]], mode: str):
        self.mode = mode
        if mode == 'quantile':
            self.low, self.high = np.asarray(stats['q01'], np.float32), np.asarray(stats['q99'], np.float32)
        elif mode == 'mean_std':
            self.mean, self.std = np.asarray(stats['mean'], np.float32), np.asarray(stats['std'], np.float32)
        else:
            raise ValueError(f'unknown normalisation mode {mode!r}')

    def normalize(self, x: np.ndarray) -> np.ndarray:
        if self.mode == 'quantile':
            return (2.0 * (x - self.low) / np.maximum(self.high - self.low, 1e-6) - 1.0).astype(np.float32)
        return ((x - self.mean) / np.maximum(self.std, 1e-6)).astype(np.float32)

    def unnormalize(self, x: np.ndarray) -> np.ndarray:
        if self.mode == 'quantile':
            return ((x + 1.0) / 2.0 * (self.high - self.low) + self.low).astype(np.float32)
        return (x * self.std + self.mean).astype(np.float32)


class IdentityNormalizer:
    def normalize(self, x):
        return np.asarray(x, np.float32)

    def unnormalize(self, x):
        return np.asarray(x, np.float32)


# ------------------------------------------------------------------------------------------------ processor
@dataclass
class VLAProcessor:
    config: VLAConfig
    robot: RobotSpec
    text_tokenizer: Tokenizer
    fast_tokenizer: FASTTokenizer | None = None
    norm_stats: dict[str, Any] | None = None
    _norm: dict[str, Any] = field(default_factory=dict, repr=False)
    _warned_long_prompt: bool = field(default=False, repr=False)

    def __post_init__(self):
        if self.text_tokenizer.get_vocab_size() > self.config.text_vocab_size:
            raise ValueError(f'text tokenizer has {self.text_tokenizer.get_vocab_size()} tokens, the model only '
                             f'{self.config.text_vocab_size}')
        if self.fast_tokenizer is not None and self.fast_tokenizer.vocab_size > self.config.fast_vocab_size:
            raise ValueError(f'FAST tokenizer has {self.fast_tokenizer.vocab_size} tokens, the model only '
                             f'{self.config.fast_vocab_size}')
        if len(self.robot.camera_names) > self.config.max_cameras:
            raise ValueError(f'{len(self.robot.camera_names)} cameras, the model has {self.config.max_cameras} slots')
        if self.robot.state_dim > self.config.state_dim or self.robot.action_dim > self.config.action_dim:
            raise ValueError('robot state/action dimensions exceed the model\'s')
        for key in ('state', 'actions'):
            stats = (self.norm_stats or {}).get(key)
            self._norm[key] = Normalizer(stats, self.robot.norm_mode) if stats else IdentityNormalizer()

    # -------------------------------------------------------------------------------- construction and files
    @classmethod
    def build(cls, config: VLAConfig, robot: RobotSpec, samples: Sequence[Mapping[str, Any]] | None = None,
              corpus: Iterable[str] = (), fit_fast: bool = True) -> VLAProcessor:
        """Fit tokenizers and normalisation statistics on dataset samples (and an extra text corpus)."""
        samples = list(samples or [])
        if any(robot.delta_action_mask):   # statistics and FAST of what the model sees: actions relative to state
            mask = np.zeros(robot.action_dim, bool)
            mask[: len(robot.delta_action_mask)] = robot.delta_action_mask
            samples = [{**s, 'actions': np.asarray(s['actions'], np.float32)[:, : robot.action_dim]
                        - np.where(mask, np.asarray(s['state'], np.float32)[: robot.action_dim], 0)}
                       if 'actions' in s else s for s in samples]
        texts = [t for s in samples for t in (s.get('task'), s.get('subtask')) if t]
        text_tok = train_text_tokenizer([*texts, *corpus], vocab_size=config.text_vocab_size)
        stats = compute_norm_stats(samples) if samples else None
        fast = None
        if fit_fast and samples:
            from ..fast import FASTConfig
            chunks = np.stack([_pad_chunk(np.asarray(s['actions'], np.float32), config.action_horizon)[0]
                               for s in samples])
            fast = FASTTokenizer.fit(chunks, FASTConfig(horizon=config.action_horizon, action_dim=robot.action_dim,
                                                        vocab_size=config.fast_vocab_size))
        return cls(config, robot, text_tok, fast, stats)

    def to_files(self) -> dict[str, Any]:
        files: dict[str, Any] = {TEXT_TOKENIZER_FILE: self.text_tokenizer.to_str(),
                                 PROCESSOR_FILE: {'robot': asdict(self.robot)}}
        if self.fast_tokenizer is not None:
            files.update(self.fast_tokenizer.to_files())
        return files

    @classmethod
    def from_checkpoint(cls, ckpt, config: VLAConfig) -> VLAProcessor:
        meta = ckpt.read_json(PROCESSOR_FILE)
        robot = RobotSpec(**{**meta['robot'], 'camera_names': tuple(meta['robot']['camera_names']),
                             'delta_action_mask': tuple(meta['robot'].get('delta_action_mask', ()))})
        text = load_text_tokenizer(ckpt.read_text(TEXT_TOKENIZER_FILE))
        fast = None
        if ckpt.has('fast_tokenizer.json'):
            from ..fast import FASTConfig
            fmeta = ckpt.read_json('fast_config.json')
            fast = FASTTokenizer(FASTConfig(**fmeta['config']), np.asarray(fmeta['low']), np.asarray(fmeta['high']),
                                 Tokenizer.from_str(ckpt.read_text('fast_tokenizer.json')))
        return cls(config, robot, text, fast, ckpt.norm_stats)

    # -------------------------------------------------------------------------------- pieces
    def image(self, img: Any, size: int) -> torch.Tensor:
        """uint8 (H, W, 3) -> float (3, size, size) in [-1, 1]."""
        t = torch.as_tensor(np.asarray(img))
        if t.ndim != 3 or t.shape[-1] != 3:
            raise ValueError(f'expected an (H, W, 3) uint8 image, got shape {tuple(t.shape)}')
        t = t.permute(2, 0, 1).float()[None] / 127.5 - 1.0
        if t.shape[-2:] != (size, size):
            t = F.interpolate(t, size=(size, size), mode='bilinear', antialias=True, align_corners=False)
        return t[0]

    def text(self, task: str | None, subtask: str | None, metadata: Mapping | None):
        """-> ids (L,), segments (L,) with L <= max_text_tokens (metadata first: short and always useful). With
        config.keep_subtask a prompt too long loses the end of its task; without it, its end (subtask first)."""
        pieces = ((SEGMENT_METADATA, metadata_text(metadata)), (SEGMENT_TASK, f'Task: {task}. ' if task else ''),
                  (SEGMENT_SUBTASK, f'Subtask: {subtask}. ' if subtask else ''))
        encoded = {seg: self.text_tokenizer.encode(text).ids if text else [] for seg, text in pieces}
        n = self.config.max_text_tokens
        over = sum(map(len, encoded.values())) - n
        if over > 0 and not self._warned_long_prompt:   # once per processor: a training log or node says it once
            self._warned_long_prompt = True
            warnings.warn(f'a prompt of {n + over} tokens is longer than the VLA reads ({n}, max_text_tokens): the '
                          + ('end of its task' if self.config.keep_subtask else 'end of its subtask') + ' is cut',
                          stacklevel=2)
        if over > 0 and self.config.keep_subtask:
            task_ids = encoded[SEGMENT_TASK]
            encoded[SEGMENT_TASK] = task_ids[:max(0, len(task_ids) - over)]
        ids: list[int] = []
        segs: list[int] = []
        for seg, _ in pieces:
            ids += encoded[seg]
            segs += [seg] * len(encoded[seg])
        return torch.tensor(ids[:n], dtype=torch.long), torch.tensor(segs[:n], dtype=torch.long)

    def state_to_model(self, state: Any) -> torch.Tensor:
        s = np.asarray(state, np.float32).reshape(-1)[: self.robot.state_dim]
        out = np.zeros(self.config.state_dim, np.float32)
        out[: len(s)] = self._norm['state'].normalize(s)
        return torch.from_numpy(out)

    def state_from_model(self, state: np.ndarray | torch.Tensor) -> np.ndarray:
        """(Ds_model,) normalised -> (state_dim,) robot units, float32 (the inverse of `state_to_model`)."""
        s = state.detach().cpu().numpy() if torch.is_tensor(state) else np.asarray(state)
        return self._norm['state'].unnormalize(s[..., : self.robot.state_dim]).astype(np.float32)

    def delta_offset(self, state: Any | None) -> np.ndarray | None:
        """(D,) what is subtracted from robot actions before normalising (state on delta dimensions), or None."""
        mask = np.asarray(self.robot.delta_action_mask, bool)
        if not mask.any() or state is None:
            return None
        s = np.asarray(state, np.float32).reshape(-1)
        offset = np.zeros(self.robot.action_dim, np.float32)
        offset[: len(mask)][mask] = s[: len(mask)][mask]
        return offset

    def to_relative(self, actions: np.ndarray, state: Any | None) -> np.ndarray:
        """(n, D) robot units -> what the model's normalisation applies to (delta dims relative to state)."""
        offset = self.delta_offset(state)
        actions = np.asarray(actions, np.float32)[:, : self.robot.action_dim]
        return actions if offset is None else actions - offset

    def actions_to_model(self, actions: np.ndarray, state: Any | None = None) -> np.ndarray:
        """(n, D) robot units -> (n, A) normalised, zero-padded dims (delta dims relative to `state`)."""
        actions = self.to_relative(actions, state)
        out = np.zeros((len(actions), self.config.action_dim), np.float32)
        out[:, : self.robot.action_dim] = self._norm['actions'].normalize(actions)
        return out

    def actions_from_model(self, actions: np.ndarray | torch.Tensor, state: Any | None = None) -> np.ndarray:
        """(H, A) normalised -> (H, D) robot units, float32 (delta dims: `state` added back)."""
        a = actions.detach().cpu().numpy() if torch.is_tensor(actions) else np.asarray(actions)
        out = self._norm['actions'].unnormalize(a[..., : self.robot.action_dim]).astype(np.float32)
        offset = self.delta_offset(state)
        return out if offset is None else (out + offset).astype(np.float32)

    # -------------------------------------------------------------------------------- training batches
    def collate(self, samples: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        """Dataset samples (the observation dict + 'actions' (H', D) robot units, optional 'action_mask' (H',))
        -> a padded training batch. A component absent from every sample is absent from the batch."""
        cfg, cams = self.config, self.robot.camera_names
        b, s = len(samples), cfg.vision.image_size
        batch: dict[str, torch.Tensor] = {}
        images = torch.zeros(b, len(cams), 3, s, s)
        image_mask = torch.zeros(b, len(cams), dtype=torch.bool)
        sub = torch.zeros(b, len(cams), 3, s, s)
        sub_mask = torch.zeros(b, len(cams), dtype=torch.bool)
        n_mem = max([len(frames) for smp in samples for frames in (smp.get('memory_images') or {}).values()] + [0])
        n_mem = min(n_mem, cfg.max_memory_frames)
        ms = cfg.memory_image_size
        mem = torch.zeros(b, len(cams), n_mem, 3, ms, ms)
        mem_mask = torch.zeros(b, len(cams), n_mem, dtype=torch.bool)
        keyframe = torch.zeros(b, len(cams), 3, s, s) if cfg.vision_goal_reads_memory else None
        for i, smp in enumerate(samples):
            for c, cam in enumerate(cams):
                if cam in (smp.get('images') or {}):
                    images[i, c] = self.image(smp['images'][cam], s)
                    image_mask[i, c] = True
                if cam in (smp.get('subgoal_images') or {}):
                    sub[i, c] = self.image(smp['subgoal_images'][cam], s)
                    sub_mask[i, c] = True
                frames = list((smp.get('memory_images') or {}).get(cam) or [])[-n_mem:] if n_mem else []
                for j, frame in enumerate(frames):   # right-aligned: the newest frame is always the last slot
                    slot = n_mem - len(frames) + j
                    mem[i, c, slot] = self.image(frame, ms)
                    mem_mask[i, c, slot] = True
                if keyframe is not None and frames:
                    keyframe[i, c] = self.image(frames[0], s)
        batch['images'], batch['image_mask'] = images, image_mask
        if sub_mask.any():
            batch['subgoal_images'], batch['subgoal_mask'] = sub, sub_mask
        if mem_mask.any():
            batch['memory_images'], batch['memory_mask'] = mem, mem_mask
            if keyframe is not None:   # the oldest slot at full size: the goal head reads it (memory_keyframe)
                batch['memory_keyframe'] = keyframe
        texts = [self.text(smp.get('task'), smp.get('subtask'), smp.get('metadata')) for smp in samples]
        length = max([len(ids) for ids, _ in texts] + [0])
        if length:
            batch['text_ids'] = torch.zeros(b, length, dtype=torch.long)
            batch['text_segments'] = torch.zeros(b, length, dtype=torch.long)
            batch['text_mask'] = torch.zeros(b, length, dtype=torch.bool)
            for i, (ids, segs) in enumerate(texts):
                batch['text_ids'][i, : len(ids)] = ids
                batch['text_segments'][i, : len(ids)] = segs
                batch['text_mask'][i, : len(ids)] = True
        batch['state'] = torch.stack([self.state_to_model(smp['state']) for smp in samples])
        if samples and all(smp.get('goal_state') is not None for smp in samples):   # normalised like the state
            batch['goal_state'] = torch.stack([self.state_to_model(smp['goal_state']) for smp in samples])
            batch['goal_mask'] = torch.zeros_like(batch['goal_state'], dtype=torch.bool)
            batch['goal_mask'][:, : self.robot.state_dim] = True
            for i, smp in enumerate(samples):   # a hindsight sample supervises some dimensions only
                if smp.get('goal_mask') is not None:
                    batch['goal_mask'][i, : self.robot.state_dim] = torch.as_tensor(smp['goal_mask'], dtype=torch.bool)
        if all('actions' in smp for smp in samples):
            self._add_action_targets(batch, samples)
        return batch

    __call__ = collate

    def _add_action_targets(self, batch: dict[str, torch.Tensor], samples: Sequence[Mapping[str, Any]]) -> None:
        cfg = self.config
        acts, masks, fast_rows = [], [], []
        for smp in samples:
            chunk, valid = _pad_chunk(np.asarray(smp['actions'], np.float32), cfg.action_horizon)
            if 'action_mask' in smp:
                valid = valid & _pad_chunk(np.asarray(smp['action_mask'], bool)[:, None], cfg.action_horizon)[0][:, 0]
            acts.append(torch.from_numpy(self.actions_to_model(chunk, smp.get('state'))))
            m = torch.zeros(cfg.action_horizon, cfg.action_dim, dtype=torch.bool)
            m[torch.from_numpy(valid), : self.robot.action_dim] = True
            masks.append(m)
            if self.fast_tokenizer is not None:
                ids = self.fast_tokenizer.encode(self.to_relative(chunk, smp.get('state')))[: cfg.max_fast_tokens - 1]
                fast_rows.append(ids + [cfg.fast_eos_id])
        batch['actions'] = torch.stack(acts)
        batch['action_mask'] = torch.stack(masks)
        if fast_rows:
            fast = torch.full((len(fast_rows), max(map(len, fast_rows))), -100, dtype=torch.long)
            for i, row in enumerate(fast_rows):
                fast[i, : len(row)] = torch.tensor(row)
            batch['fast_ids'] = fast

    # -------------------------------------------------------------------------------- inference
    def observation_batch(self, obs: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """A batch of one from an observation dict, holding only the components present."""
        cfg, cams = self.config, self.robot.camera_names
        batch: dict[str, torch.Tensor] = {}
        present = [c for c in cams if c in (obs.get('images') or {})]
        if present:
            # Only cameras up to the last present one are laid out (slots keep their identity).
            last = max(cams.index(c) for c in present) + 1
            imgs = torch.zeros(1, last, 3, cfg.vision.image_size, cfg.vision.image_size)
            mask = torch.zeros(1, last, dtype=torch.bool)
            for c in present:
                imgs[0, cams.index(c)] = self.image(obs['images'][c], cfg.vision.image_size)
                mask[0, cams.index(c)] = True
            batch['images'], batch['image_mask'] = imgs, mask
        sub = {c: v for c, v in (obs.get('subgoal_images') or {}).items() if c in cams}
        if sub:
            n = max(cams.index(c) for c in sub) + 1
            imgs = torch.zeros(1, n, 3, cfg.vision.image_size, cfg.vision.image_size)
            mask = torch.zeros(1, n, dtype=torch.bool)
            for c, v in sub.items():
                imgs[0, cams.index(c)] = self.image(v, cfg.vision.image_size)
                mask[0, cams.index(c)] = True
            batch['subgoal_images'], batch['subgoal_mask'] = imgs, mask
        mem = {c: list(v)[-cfg.max_memory_frames:] for c, v in (obs.get('memory_images') or {}).items()
               if c in cams and v is not None and len(v)}
        if mem:
            n = max(cams.index(c) for c in mem) + 1
            t = max(len(v) for v in mem.values())
            ms = cfg.memory_image_size
            frames = torch.zeros(1, n, t, 3, ms, ms)
            mask = torch.zeros(1, n, t, dtype=torch.bool)
            for c, v in mem.items():
                for j, f in enumerate(v):
                    frames[0, cams.index(c), t - len(v) + j] = self.image(f, ms)
                    mask[0, cams.index(c), t - len(v) + j] = True
            batch['memory_images'], batch['memory_mask'] = frames, mask
            if cfg.vision_goal_reads_memory:
                key = torch.zeros(1, n, 3, cfg.vision.image_size, cfg.vision.image_size)
                for c, v in mem.items():
                    key[0, cams.index(c)] = self.image(v[0], cfg.vision.image_size)
                batch['memory_keyframe'] = key
        ids, segs = self.text(obs.get('task'), obs.get('subtask'), obs.get('metadata'))
        if len(ids):
            batch['text_ids'], batch['text_segments'] = ids[None], segs[None]
            batch['text_mask'] = torch.ones(1, len(ids), dtype=torch.bool)
        batch['state'] = self.state_to_model(obs['state'])[None]
        return batch

    def describe(self) -> str:
        return json.dumps({'robot': asdict(self.robot), 'fast': self.fast_tokenizer is not None})


def _pad_chunk(chunk: np.ndarray, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, D) -> (horizon, D) repeating the last row; validity mask (horizon,)."""
    n = len(chunk)
    valid = np.arange(horizon) < n
    if n >= horizon:
        return chunk[:horizon], valid
    pad = np.repeat(chunk[-1:], horizon - n, axis=0) if n else np.zeros((horizon, chunk.shape[1]), chunk.dtype)
    return np.concatenate([chunk, pad]), valid
