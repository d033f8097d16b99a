"""Synthetic VLA samples (the dict the real bag datasets will yield), for tests and benchmarks.

Each sample's action chunk is a smooth function of its state and of which task it has, and the images carry a
colour cue, so a model that reads its prompt can fit a small set exactly.
"""
from __future__ import annotations

import numpy as np
from torch.utils.data import Dataset

TASKS = ['put the red block in the bowl', 'open the drawer', 'stack the blue block on the red block']
SUBTASKS = ['pick up the red block', 'move to the bowl', 'release the block', 'pull the handle']


def make_sample(rng: np.random.Generator, horizon: int = 50, state_dim: int = 14, action_dim: int = 14,
                cameras=('front', 'wrist'), image_size: int = 96, memory_frames: int = 2, with_subgoal: bool = True,
                with_memory: bool = True) -> dict:
    task_id = int(rng.integers(len(TASKS)))
    state = rng.uniform(-1, 1, state_dim).astype(np.float32)
    t = np.linspace(0, 1, horizon, dtype=np.float32)[:, None]
    freq = 0.5 + task_id
    actions = (state[None, :action_dim] * (1 - t) + 0.5 * np.sin(2 * np.pi * freq * t + np.arange(action_dim)))
    colour = np.zeros(3, np.uint8)
    colour[task_id] = 200

    def image():
        img = rng.integers(0, 40, (image_size, image_size, 3), dtype=np.uint8)
        img[: image_size // 2] += colour
        return img

    sample = {
        'images': {c: image() for c in cameras},
        'state': state,
        'task': TASKS[task_id],
        'subtask': SUBTASKS[int(rng.integers(len(SUBTASKS)))],
        'metadata': {'speed': int(rng.integers(1, 4)), 'quality': int(rng.integers(1, 6)),
                     'mistake': bool(rng.integers(2)), 'control_mode': 'joint'},
        'actions': actions.astype(np.float32),
    }
    if with_subgoal:
        sample['subgoal_images'] = {c: image() for c in cameras}
    if with_memory:
        sample['memory_images'] = {c: [image() for _ in range(memory_frames)] for c in cameras}
    return sample


class SyntheticVLADataset(Dataset):
    def __init__(self, n: int = 16, seed: int = 0, **kwargs):
        rng = np.random.default_rng(seed)
        self.samples = [make_sample(rng, **kwargs) for _ in range(n)]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> dict:
        return self.samples[i]
