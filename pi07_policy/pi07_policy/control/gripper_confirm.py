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

import math
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

    def hold_before_switch(self, actions: np.ndarray, commanded_gripper: float | None, first_row: int,
                           end_row: int, row0_lead_s: float, dt: float) -> tuple[np.ndarray, int | None]:
        """A chunk about to be published, cut short of a switch planned too far ahead. Its rows play from
        `first_row` (the rows before ran during the inference) until the next chunk takes over, at `end_row`
        (exclusive; a switch after it is the next chunk's to decide, from a fresher observation); row r was planned
        row0_lead_s + r dt after the observation; `commanded_gripper` is the gripper value the robot is commanded
        when this chunk takes over (None: nothing yet). Returns the chunk and None if the first switch it plays is
        near enough (or there is none); else a copy holding, from that row on, the row before it with the gripper
        at `commanded_gripper`, and that row's index: the robot stops there until a chunk from the present decides
        the switch."""
        if commanded_gripper is None:
            return actions, None
        commanded_closed = float(commanded_gripper) > self.threshold
        first_row = max(0, min(first_row, len(actions) - 1))
        for j in range(first_row, min(max(end_row, first_row + 1), len(actions))):
            if self.is_closed(actions[j]) != commanded_closed:
                if row0_lead_s + j * dt <= self.max_lead_s + 1e-9:
                    return actions, None
                held = np.array(actions, copy=True)
                held[j:] = held[max(j - 1, 0)]
                held[j:, self.index] = commanded_gripper
                return held, j
        return actions, None

    def trusted_rows(self, dt: float) -> int:
        """Rows of a chunk computed with the robot still that are planned within `max_lead_s` of its observation:
        what such a chunk plays before the robot stops and looks again (a switch among them is obeyed)."""
        return int(math.floor(self.max_lead_s / dt + 1e-9)) + 1

    def switches(self, actions: np.ndarray, commanded_gripper: float) -> bool:
        """Whether any row of `actions` puts the gripper on the other side from `commanded_gripper`."""
        closed = float(commanded_gripper) > self.threshold
        return any(self.is_closed(a) != closed for a in actions)
