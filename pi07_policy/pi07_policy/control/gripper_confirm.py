"""Confirm a gripper switch against a fresh observation before obeying it.

Why: under inference delay every row the robot plays was planned from an observation at least D steps old. Free
motion tolerates that lead; a grasp does not. With the arm's VLA at D = 4 (0.4 s) the commanded closes came while
the arm was still moving toward the block, 4-6 cm beside it or 3-9 cm above, where with a fresh observation
(synchronous execution) they came with the tool still and within 2 cm (docs/evaluation.md, "Gripper switches
under delay"). So a chunk that arrives too late (its first row still to play planned more than `max_lead_s` after
its observation) makes no switch: it stops the robot before its first one, and a chunk computed with the robot
standing still decides it. That is synchronous execution at the grasps and releases only, and only when the
inference is slow; asynchronous (RTC) execution everywhere else.
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
                           row0_lead_s: float, dt: float) -> tuple[np.ndarray, int | None]:
        """A chunk about to be published, cut short of a gripper switch if it came too late to decide one. Its
        rows play from `first_row` on (the rows before ran during the inference); row r was planned
        row0_lead_s + r dt after the observation; `commanded_gripper` is the gripper value the robot is commanded
        when this chunk takes over (None: nothing yet). If even its first played row was planned within
        `max_lead_s`, or it plays no switch, it is returned as it is, with None. Otherwise the first switch it
        plays, however far ahead, waits: a copy holds, from that row on, the row before it with the gripper at
        `commanded_gripper` (the robot stops there until a chunk from the present decides the switch), returned
        with that row's index. Measured: holding only a switch due before the next chunk takes over did not help
        (docs/evaluation.md, "Gripper switches under delay")."""
        if commanded_gripper is None:
            return actions, None
        first_row = max(0, min(first_row, len(actions) - 1))
        if row0_lead_s + first_row * dt <= self.max_lead_s + 1e-9:
            return actions, None
        commanded_closed = float(commanded_gripper) > self.threshold
        for j in range(first_row, len(actions)):
            if self.is_closed(actions[j]) != commanded_closed:
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
