"""Synthetic world-model data: coloured blocks that move as the subtask text says.

Until datasets from recorded bags exist, this gives tests, the benchmark and the docs a task where the text,
the metadata and the current image all matter: "move the red block left" moves the red block, by a distance
set by the speed metadata (faster = further in the same horizon). Two cameras see the same scene: 'scene' from
above, 'wrist' mirrored on another background (so cross-view attention has something to share).
"""
from __future__ import annotations

import numpy as np
import torch

COLORS = {'red': (220, 40, 40), 'green': (40, 190, 60), 'blue': (50, 80, 230), 'yellow': (230, 210, 40)}
DIRECTIONS = {'left': (0, -1), 'right': (0, 1), 'up': (-1, 0), 'down': (1, 0)}
BACKGROUNDS = {'scene': (120, 120, 120), 'wrist': (70, 90, 110)}
TASKS = ('tidy the table', 'rearrange the blocks')


def render(blocks: dict[str, tuple[int, int]], camera: str, size: int, block: int) -> np.ndarray:
    """uint8 (size, size, 3) image of the blocks (top-left corners in pixels) seen by the camera."""
    img = np.empty((size, size, 3), np.uint8)
    img[:] = BACKGROUNDS[camera]
    for name, (r, c) in blocks.items():
        img[r:r + block, c:c + block] = COLORS[name]
    return img[:, ::-1].copy() if camera == 'wrist' else img


class MovingBlocksDataset(torch.utils.data.Dataset):
    """Samples {'images', 'subgoal_images', 'subtask', 'task', 'metadata'} (images: uint8 HxWx3 per camera)."""

    def __init__(self, num_samples: int, image_size: int = 96, cameras=('scene', 'wrist'), num_blocks: int = 2,
                 seed: int = 0):
        self.num_samples, self.size, self.cameras, self.num_blocks, self.seed = (num_samples, image_size,
                                                                                 tuple(cameras), num_blocks, seed)
        self.block = max(3, image_size // 8)

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, index: int) -> dict:
        rng = np.random.default_rng([self.seed, index])
        S, b = self.size, self.block
        names = list(rng.choice(list(COLORS), size=self.num_blocks, replace=False))
        blocks = {n: (int(rng.integers(0, S - b)), int(rng.integers(0, S - b))) for n in names}
        mover, direction = names[0], str(rng.choice(list(DIRECTIONS)))
        speed = int(rng.integers(1, 6))
        step = round(S * (0.1 + 0.05 * speed))       # speed 1 -> 15 % of the image, speed 5 -> 35 %
        dr, dc = DIRECTIONS[direction]
        r, c = blocks[mover]
        goal = dict(blocks)
        goal[mover] = (int(np.clip(r + dr * step, 0, S - b)), int(np.clip(c + dc * step, 0, S - b)))
        return {
            'images': {cam: render(blocks, cam, S, b) for cam in self.cameras},
            'subgoal_images': {cam: render(goal, cam, S, b) for cam in self.cameras},
            'subtask': f'move the {mover} block {direction}',
            'task': str(rng.choice(TASKS)),
            'metadata': {'speed': speed, 'quality': int(rng.integers(1, 6)), 'mistake': 0,
                         'control_mode': 'joint'},
        }

    def texts(self) -> list[str]:
        """Every word the prompts can contain (to fit the tokenizer)."""
        return [f'move the {c} block {d}' for c in COLORS for d in DIRECTIONS] + list(TASKS)
