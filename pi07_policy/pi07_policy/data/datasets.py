"""Torch Datasets over a converted pi07 dataset (format.py): samples for the VLA, the high-level decoder and the
world model, as the dicts their processors' `collate` takes.

One sample of `VLADataset` (step t of an episode):

    images          {cam: (S, S, 3) uint8}         the frames at t
    state           (Ds,) float32                  joint state at t
    actions         (H, Da) float32                commands t .. t+H-1, the last one repeated past the end
    action_mask     (H,) bool                      False on the repeated padding
    task            str                            the instruction
    subtask         str | None                     the active subtask (from the `subtask` topic)
    metadata        {speed, quality, mistake, control_mode}
    subgoal_images  {cam: uint8}   (sometimes)     the frame where the current subtask ends, or a few seconds
                                                   ahead (pi0.7 mixes both), never past the episode's end
    memory_images   {cam: [uint8, ...]} (sometimes) MEM short-term memory: frames kept every `memory_stride_s`
                                                   since the start, the last `memory_frames`, oldest first,
                                                   the oldest repeated to fill (what pi07_memory publishes)
    language_memory str                            'Done: a; b.' (subtasks finished before the current one)
    goal_state      (Ds,) float32                  joint state where the current subtask ends (the goal head's target)
    goal_mask       (Ds,) bool   (hindsight samples) the dimensions of goal_state that are supervised

Random choices (whether a sample carries a subgoal / memory, which subgoal, augmentation) use torch's RNG, which
DataLoader seeds per worker, so runs are reproducible with a fixed training seed.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pi07_common.memory_layout import memory_slots
from torch.utils.data import Dataset

from .format import open_episode, read_index, read_norm_stats

# Hindsight "put it back" samples (`hindsight_return_prob`, goal training only): once an object has been picked,
# only the episode's first frame shows where it started, so any episode that picks it can teach a goal head to
# find that spot, not only the episodes of a task that puts it back (restore_layout has a few hundred; every
# ordered_place episode picks two blocks). The goal is the state where the object's first pick ended (above its
# starting spot); `hindsight_return_dims` says which of its dimensions carry over (a place ends lower than a pick).
PICK_SUBTASK = re.compile(r'pick up the (?P<obj>.+) block')
RETURN_SUBTASK = 'put the {obj} block back where it was'
# Place targets in words the model never read (`unknown_place_prob`): the subtask keeps its verb and object, its
# target becomes random letters, and the subgoal image of the subtask done shows where it goes. A VLA trained so
# takes the spot from the subgoal image where the words do not say it, as pi0.7's world model shows goals (learnt
# from video) that the VLA's own data never named (docs/evaluation.md, session 27).
PLACE_SUBTASK = re.compile(r'(?P<verb>place|put) the (?P<obj>\w+) block .+')


def unknown_words(n_min: int = 2, n_max: int = 5) -> str:
    """A few words of random lowercase letters (drawn from torch's generator, as the other augmentations)."""
    letters = 'abcdefghijklmnopqrstuvwxyz'
    words = []
    for _ in range(int(torch.randint(n_min, n_max + 1, ()))):
        size = int(torch.randint(2, 8, ()))
        words.append(''.join(letters[int(i)] for i in torch.randint(len(letters), (size,))))
    return ' '.join(words)


def language_memory(done: list[str]) -> str:
    """The plain-template summary of the subtasks done so far."""
    return f"Done: {'; '.join(done)}." if done else ''


def _rand() -> float:
    return float(torch.rand(()))


def shift_augment(img: np.ndarray, max_shift: int) -> np.ndarray:
    """Random translation by up to max_shift pixels (edge-replicated), as DrQ / diffusion-policy crops do."""
    if max_shift <= 0:
        return np.array(img)   # a writable copy, not a view of the memory map
    dy, dx = (int(v) for v in torch.randint(-max_shift, max_shift + 1, (2,)))
    padded = np.pad(np.asarray(img), ((max_shift, max_shift), (max_shift, max_shift), (0, 0)), mode='edge')
    h, w = img.shape[:2]
    return padded[max_shift + dy: max_shift + dy + h, max_shift + dx: max_shift + dx + w]


class EpisodeDataset(Dataset):
    """Base: the index, lazily opened memory maps (per process: workers open their own), the (episode, step) list."""

    def __init__(self, root: str | Path, split: str | None = 'train', episodes: list[str] | None = None,
                 step_stride: int = 1, include: list[str] | None = None):
        self.root = Path(root)
        self.index = read_index(self.root)
        self.norm_stats = read_norm_stats(self.root)
        self.camera_names = tuple(self.index['camera_names'])
        eps = [e for e in self.index['episodes'] if split in (None, 'all') or e['split'] == split]
        if episodes is not None:
            eps = [e for e in eps if e['name'] in set(episodes)]
        if include:   # name substrings, e.g. ['ordered_place']
            eps = [e for e in eps if any(pattern in e['name'] for pattern in include)]
        if not eps:
            raise ValueError(f'{root}: no episodes in split {split!r}')
        self.episodes = eps
        self.items = [(k, t) for k, e in enumerate(eps) for t in range(0, e['length'], step_stride)]
        self._arrays: dict[int, Any] = {}

    def __getstate__(self):   # memory maps are reopened in each worker, not pickled
        state = dict(self.__dict__)
        state['_arrays'] = {}
        return state

    def __len__(self) -> int:
        return len(self.items)

    def arrays(self, k: int):
        if k not in self._arrays:
            self._arrays[k] = open_episode(self.root, self.episodes[k]['name'], self.camera_names)
        return self._arrays[k]

    def segments(self, k: int) -> list[tuple[int, int, int]]:
        """(subtask index, first step, step after the last) of each subtask segment of episode k."""
        key = ('segments', k)
        if key not in self._arrays:
            sub = np.asarray(self.arrays(k).subtask_index)
            segs, start = [], 0
            for t in range(1, len(sub) + 1):
                if t == len(sub) or sub[t] != sub[start]:
                    if sub[start] >= 0:
                        segs.append((int(sub[start]), start, t))
                    start = t
            self._arrays[key] = segs
        return self._arrays[key]

    def texts(self) -> list[str]:
        out = set()
        for e in self.index['episodes']:
            out.update(t for t in [e.get('instruction'), *e.get('subtasks', []), *e.get('plan', [])] if t)
        return sorted(out)


def idle_steps(states, actions, tolerance: float) -> np.ndarray:
    """(T,) bool: the steps inside a pause, where the command did not change (|a[t] - a[t-1]| < tolerance) and
    the robot will not move over the next step (|s[t+1] - s[t]| < tolerance), e.g. while a closed gripper settles
    before the lift. Every such step shows the same observation, but its chunk starts the next motion a different
    number of steps later; trained on all of them, a policy that re-plans every step or two keeps predicting
    "wait a little" and never leaves the pause (the no-op filtering of OpenVLA's data has the same reason). The
    step that ends the pause (the first new command) is not idle, so it stays."""
    s = np.asarray(states, np.float32)
    a = np.asarray(actions, np.float32)
    idle = np.zeros(len(s), bool)
    if len(s) > 1:
        still_next = np.abs(np.diff(s, axis=0)).max(1) < tolerance         # s[t+1] ~ s[t], t = 0..T-2
        same_command = np.abs(np.diff(a, axis=0)).max(1) < tolerance       # a[t] ~ a[t-1], t = 1..T-1
        idle[1:-1] = still_next[1:] & same_command[:-1]
    return idle


class VLADataset(EpisodeDataset):
    def __init__(self, root: str | Path, split: str | None = 'train', horizon: int = 10, *,
                 subgoal_prob: float = 0.0, subgoal_end_prob: float = 0.5, subgoal_ahead_s: float = 3.0,
                 memory_prob: float = 0.0, memory_frames: int = 6, memory_stride_s: float = 1.0,
                 image_shift: int = 0, episodes: list[str] | None = None, step_stride: int = 1,
                 with_images: bool = True, include: list[str] | None = None, with_actions: bool = True,
                 segment_start_fraction: float | None = None, idle_tolerance: float = 0.0,
                 extras_per_batch: int = 0, memory_keep_first: bool = False, hindsight_return_prob: float = 0.0,
                 hindsight_return_dims: tuple[int, ...] | None = None, repeat: dict[str, int] | None = None,
                 unknown_place_prob: float = 0.0):
        """`extras_per_batch` B > 0: every run of B consecutive samples (a DataLoader worker builds a batch's
        samples in a row) shares one coin for subgoal images and one for memory frames, instead of one per sample.
        The prompt is padded to the batch's longest, so one sample with memory made the whole batch pay for its
        tokens; per batch, the same share of samples carries them at about half the cost (docs/data.md).
        `segment_start_fraction`: only the steps in the first fraction of each subtask segment (where the
        object to go to is farthest; the image encoder's goal pretraining uses them). `with_actions=False`:
        samples without the action chunk (nothing to tokenise when only the goal is trained).
        `idle_tolerance` > 0: leave out the steps at which the robot pauses (`idle_steps`), so that a pause looks
        like its last step and the policy learns to go on from it (see `idle_steps`).
        `memory_keep_first`: the oldest memory slot is the episode's first frame (a MEM keyframe), the others the
        latest (pi07_memory's `keep_first_frame`).
        `hindsight_return_prob` > 0 (with `with_actions=False`): that fraction of the samples taken after an
        object's pick is relabelled "put the <object> block back where it was" (RETURN_SUBTASK), with memory
        frames and the state where that pick ended as the goal, supervised on `hindsight_return_dims` (all
        dimensions if None) — see PICK_SUBTASK.
        `repeat` {name substring: K}: the steps of the episodes whose name contains it appear K times (the first
        matching substring counts), so a family that is a small share of the episodes gets more of the batches
        without dropping the others.
        `unknown_place_prob`: that fraction of the samples of a place subtask say its target in random letters
        (the task too) and carry the subtask-done subgoal image (PLACE_SUBTASK)."""
        super().__init__(root, split, episodes, step_stride, include)
        if not 0 <= unknown_place_prob <= 1:
            raise ValueError(f'unknown_place_prob must be in [0, 1], got {unknown_place_prob}')
        self.unknown_place_prob = unknown_place_prob
        self.with_actions = with_actions
        if hindsight_return_prob and with_actions:
            raise ValueError('hindsight_return_prob relabels the goal only: it needs with_actions=False')
        if not 0 <= hindsight_return_prob <= 1:
            raise ValueError(f'hindsight_return_prob must be in [0, 1], got {hindsight_return_prob}')
        self.hindsight_return_prob = hindsight_return_prob
        self.hindsight_return_dims = tuple(hindsight_return_dims) if hindsight_return_dims is not None else None
        state_dim = len(self.index['state_names'])
        if self.hindsight_return_dims is not None and not all(0 <= d < state_dim for d in self.hindsight_return_dims):
            raise ValueError(f'hindsight_return_dims {self.hindsight_return_dims}: state dimensions are 0..'
                             f'{state_dim - 1} ({", ".join(self.index["state_names"])})')
        if idle_tolerance < 0:
            raise ValueError(f'idle_tolerance must be >= 0 (0: keep every step), got {idle_tolerance}')
        if idle_tolerance > 0:   # an episode's first and last steps are never idle, so no episode is emptied
            idle = {(k, int(t)) for k in range(len(self.episodes))
                    for t in np.flatnonzero(idle_steps(self.arrays(k).state, self.arrays(k).actions, idle_tolerance))}
            self.items = [item for item in self.items if item not in idle]
        if segment_start_fraction is not None:
            if not 0 < segment_start_fraction <= 1:
                raise ValueError(f'segment_start_fraction must be in (0, 1], got {segment_start_fraction}')
            keep = set()
            for k in range(len(self.episodes)):
                for _, start, stop in self.segments(k):
                    first = max(1, int((stop - start) * segment_start_fraction))
                    keep.update((k, t) for t in range(start, start + first))
            self.items = [item for item in self.items if item in keep]
            if not self.items:
                raise ValueError(f'{root}: no steps inside a subtask segment (no `subtask` topic recorded?)')
        if repeat:
            if any(int(k) < 1 for k in repeat.values()):
                raise ValueError(f'repeat counts must be >= 1, got {repeat}')
            unmatched = [pattern for pattern in repeat if not any(pattern in e['name'] for e in self.episodes)]
            if unmatched:   # a misspelt family would silently change nothing
                raise ValueError(f'repeat: no episode name contains {unmatched} (in split {split!r})')
            times = [next((int(k) for pattern, k in repeat.items() if pattern in e['name']), 1) for e in self.episodes]
            self.items = [item for item in self.items for _ in range(times[item[0]])]
        self.horizon = horizon
        self.subgoal_prob, self.subgoal_end_prob = subgoal_prob, subgoal_end_prob
        rate = float(self.index['control_rate_hz'])
        self.subgoal_ahead = max(1, int(round(subgoal_ahead_s * rate)))
        self.memory_prob, self.memory_frames = memory_prob, memory_frames
        self.memory_stride = max(1, int(round(memory_stride_s * rate)))
        self.memory_keep_first = memory_keep_first
        self.image_shift = image_shift
        self.with_images = with_images
        if extras_per_batch < 0:
            raise ValueError(f'extras_per_batch must be >= 0 (0: a coin per sample), got {extras_per_batch}')
        self.extras_per_batch = extras_per_batch
        self._calls, self._batch_extras = 0, (False, False)

    def _extras(self) -> tuple[bool, bool]:
        """Whether this sample gets (subgoal images, memory frames)."""
        def draw() -> tuple[bool, bool]:
            return (self.subgoal_prob > 0 and _rand() < self.subgoal_prob,
                    self.memory_prob > 0 and _rand() < self.memory_prob)
        if not self.extras_per_batch:
            return draw()
        if self._calls % self.extras_per_batch == 0:
            self._batch_extras = draw()
        self._calls += 1
        return self._batch_extras

    def subgoal_step(self, k: int, t: int, at_end: bool) -> int:
        arr = self.arrays(k)
        n = len(arr)
        if at_end:
            for _, start, stop in self.segments(k):
                if start <= t < stop:
                    return min(stop, n - 1)   # the first frame of the next segment shows this one done
            return n - 1
        return min(t + self.subgoal_ahead, n - 1)

    def memory_steps(self, t: int) -> list[int]:
        return memory_slots(list(range(0, t + 1, self.memory_stride)), self.memory_frames, self.memory_keep_first)

    def chunk(self, k: int, t: int) -> tuple[np.ndarray, np.ndarray]:
        acts = self.arrays(k).actions
        chunk = np.asarray(acts[t: t + self.horizon], np.float32)
        mask = np.zeros(self.horizon, bool)
        mask[: len(chunk)] = True
        if len(chunk) < self.horizon:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], self.horizon - len(chunk), axis=0)])
        return chunk, mask

    def hindsight_return(self, k: int, t: int) -> tuple[str, int] | None:
        """(object, step where its first pick ended) for a random object of episode k picked before step t, or
        None if none was."""
        first_pick: dict[str, int] = {}
        for s, _, stop in self.segments(k):
            found = PICK_SUBTASK.fullmatch(self.episodes[k]['subtasks'][s])
            if found and stop <= t:
                first_pick.setdefault(found['obj'], min(stop, len(self.arrays(k)) - 1))
        if not first_pick:
            return None
        obj = sorted(first_pick)[int(torch.randint(len(first_pick), ()))]
        return obj, first_pick[obj]

    def __getitem__(self, i: int) -> dict[str, Any]:
        k, t = self.items[i]
        ep, arr = self.episodes[k], self.arrays(k)
        sub = int(arr.subtask_index[t])
        subtasks = ep['subtasks']
        done_texts = [subtasks[s] for s, _, stop in self.segments(k) if stop <= t and s != sub]
        chunk, mask = self.chunk(k, t)
        sample: dict[str, Any] = {
            'state': np.asarray(arr.state[t], np.float32),
            'goal_state': np.asarray(arr.state[self.subgoal_step(k, t, True)], np.float32),
            'actions': chunk, 'action_mask': mask,
            'task': ep['instruction'] or None,
            'subtask': subtasks[sub] if sub >= 0 else None,
            'metadata': dict(ep['metadata']) or None,
            'language_memory': language_memory(done_texts),
            'episode': ep['name'], 'step': t,
        }
        relabel = (self.hindsight_return(k, t) if self.hindsight_return_prob > 0
                   and _rand() < self.hindsight_return_prob else None)
        if relabel is not None:
            obj, goal_step = relabel
            goal_mask = np.zeros(len(sample['state']), bool)
            dims = self.hindsight_return_dims
            goal_mask[list(dims) if dims is not None else slice(None)] = True
            # the instruction names another task: the subtask alone asks for the return
            sample.update(subtask=RETURN_SUBTASK.format(obj=obj), task=None, goal_mask=goal_mask,
                          goal_state=np.asarray(arr.state[goal_step], np.float32))
        place = (PLACE_SUBTASK.fullmatch(sample['subtask'] or '')
                 if self.unknown_place_prob > 0 and relabel is None else None)   # no regex per sample when off
        unknown = place is not None and _rand() < self.unknown_place_prob
        if unknown:
            sample.update(subtask=f"{place['verb']} the {place['obj']} block {unknown_words()}",
                          task=f"{unknown_words(1, 2)} the {place['obj']} block {unknown_words()}")
        if not self.with_actions:
            del sample['actions'], sample['action_mask']
        if self.with_images:
            sample['images'] = {c: shift_augment(arr.images[c][t], self.image_shift) for c in self.camera_names}
            with_subgoal, with_memory = self._extras()
            with_memory = with_memory or relabel is not None   # only the first frame shows where it started
            with_subgoal = with_subgoal and relabel is None    # the recorded future is not the relabelled goal's
            if with_subgoal or unknown:   # an unknown target: only the subgoal image tells the spot
                g = self.subgoal_step(k, t, unknown or _rand() < self.subgoal_end_prob)
                sample['subgoal_images'] = {c: np.array(arr.images[c][g]) for c in self.camera_names}
            if with_memory:
                steps = self.memory_steps(t)
                sample['memory_images'] = {c: [np.array(arr.images[c][s]) for s in steps]
                                           for c in self.camera_names}
        return sample


class WorldModelDataset(VLADataset):
    """Samples for the world model: current images -> subgoal images (always present), subtask, task, metadata;
    with `keyframe`, also each camera's first frame of the episode (`keyframe_images`: the MEM keyframe that the
    memory node keeps with keep_first_frame)."""

    def __init__(self, root: str | Path, split: str | None = 'train', keyframe: bool = False, **kwargs):
        kwargs.setdefault('subgoal_prob', 1.0)
        super().__init__(root, split, horizon=1, **kwargs)
        self.keyframe = keyframe

    def __getitem__(self, i: int) -> dict[str, Any]:
        s = super().__getitem__(i)
        out = {k: s[k] for k in ('images', 'subgoal_images', 'subtask', 'task', 'metadata') if k in s}
        if self.keyframe:
            arr = self.arrays(self.items[i][0])
            out['keyframe_images'] = {c: np.array(arr.images[c][0]) for c in self.camera_names}
        return out


class HighLevelDataset(EpisodeDataset):
    """Samples for the high-level decoder, two kinds (processing_high_level):

    - subtask mode, every `step_stride` steps: images at t, task, language memory, metadata, the subtasks done
      so far -> the active subtask, or <done> once every subtask of the episode is complete (task_status)
    - memory mode, at each subtask boundary (repeated `memory_repeat` times, they are rare): the old summary +
      the finished subtask -> the new summary

    `history_lag_prob`: in closed loop the history only grows when the decoder itself moves on, so at the moment a
    subtask is finished its history does not list it yet: the images alone must show that it is done. With this
    probability a subtask-mode sample past the first segment gets the history (and memory) of one subtask
    earlier, with the same target; without such samples the history always tells the answer, the decoder learns
    to read the text alone and never leaves the first subtask.
    """

    def __init__(self, root: str | Path, split: str | None = 'train', step_stride: int = 3, memory_repeat: int = 3,
                 image_shift: int = 0, episodes: list[str] | None = None, include: list[str] | None = None,
                 history_lag_prob: float = 0.0):
        if not 0 <= history_lag_prob <= 1:
            raise ValueError(f'history_lag_prob must be in [0, 1], got {history_lag_prob}')
        super().__init__(root, split, episodes, step_stride, include)
        self.image_shift = image_shift
        self.history_lag_prob = history_lag_prob
        items = []
        for k, t in self.items:
            sub = int(self.arrays(k).subtask_index[t])
            if sub >= 0 or self._task_done(k, t):
                items.append(('subtask', k, t))
        for k in range(len(self.episodes)):
            segs = self.segments(k)
            for j, (_, _, stop) in enumerate(segs):
                items += [('memory', k, min(stop, len(self.arrays(k)) - 1), j)] * memory_repeat
        self.items = items
        self._arrays = {}

    def _task_done(self, k: int, t: int) -> bool:
        arr = self.arrays(k)
        total = len(self.episodes[k]['plan']) or len(self.episodes[k]['subtasks'])
        return total > 0 and int(arr.progress[t]) >= total

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = self.items[i]
        k, t = item[1], item[2]
        ep, arr = self.episodes[k], self.arrays(k)
        subtasks, segs = ep['subtasks'], self.segments(k)
        images = {c: shift_augment(arr.images[c][t], self.image_shift) for c in self.camera_names}
        meta = dict(ep['metadata']) or None
        if item[0] == 'memory':
            j = item[3]
            before = [subtasks[s] for s, _, _ in segs[:j]]
            return {'images': images, 'task': ep['instruction'], 'memory': language_memory(before),
                    'completed_subtask': subtasks[segs[j][0]],
                    'updated_memory': language_memory([*before, subtasks[segs[j][0]]])}
        sub = int(arr.subtask_index[t])
        task_done = self._task_done(k, t)
        done = [subtasks[s] for s, _, _ in segs] if task_done else \
            [subtasks[s] for s, _, stop in segs if stop <= t and s != sub]
        if done and self.history_lag_prob > 0 and _rand() < self.history_lag_prob:
            done = done[:-1]    # the last finished subtask not recorded yet: the images must show it is done
        sample = {'images': images, 'task': ep['instruction'], 'memory': language_memory(done), 'metadata': meta,
                  'subtask_history': done}
        if task_done:
            sample['task_done'] = True
        else:
            sample['next_subtask'] = subtasks[sub]
        return sample
