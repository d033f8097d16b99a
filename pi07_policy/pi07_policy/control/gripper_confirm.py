"""Confirm a gripper switch against a fresh observation before obeying it.

Why: under inference delay every row the robot plays was planned from an observation at least D steps old. Free
motion tolerates that lead; a grasp does not. With the arm's VLA at D = 4 (0.4 s) the commanded closes came while
the arm was still moving toward the block, 4-6 cm beside it or 3-9 cm above, where with a fresh observation
(synchronous execution) they came with the tool still and within 2 cm (docs/evaluation.md, "Gripper switches
under delay"). So a switch of the gripper is obeyed only from a row planned at most `max_lead_s` after the
observation it was planned from; otherwise the robot holds still and asks for a chunk from the present.
That is synchronous execution at the contact events only, and asynchronous (RTC) execution everywhere else.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class GripperSwitchConfirm:
    index: int          # the gripper's action dimension
    threshold: float    # above: closed (the midpoint of its position range)
    max_lead_s: float   # a switch planned further ahead of its observation than this waits for a fresh one

    def __post_init__(self):
        if not self.max_lead_s >= 0:
            raise ValueError(f'max_lead_s must be >= 0, got {self.max_lead_s}')

    def is_closed(self, action: np.ndarray) -> bool:
        return float(action[self.index]) > self.threshold

    def needs_confirmation(self, action: np.ndarray, commanded_closed: bool | None, lead_s: float) -> bool:
        """Whether `action` switches the gripper away from `commanded_closed` (None: nothing commanded yet) from a
        row planned `lead_s` after its observation, further ahead than `max_lead_s`."""
        if commanded_closed is None:
            return False
        return self.is_closed(action) != commanded_closed and lead_s > self.max_lead_s + 1e-9

    def rows_to_play(self, actions: np.ndarray, commanded_closed: bool | None, dt: float, rows: int) -> int:
        """How many rows of a chunk computed while the robot held still to play: `rows`, or up to and including
        its first gripper switch if that is within `max_lead_s` (else a switch the gate accepts might never be
        reached, each fresh chunk stopping short of it)."""
        rows = max(1, min(rows, len(actions)))
        if commanded_closed is None:
            return rows
        for j, action in enumerate(actions):
            if self.is_closed(action) != commanded_closed:
                return max(rows, j + 1) if j * dt <= self.max_lead_s + 1e-9 else rows
        return rows
