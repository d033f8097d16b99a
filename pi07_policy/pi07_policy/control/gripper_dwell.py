"""A minimum dwell for a binary gripper: once it switches (open → closed or back), the opposite command is obeyed
only after `min_dwell_s`.

Why: a flow-matching policy samples each chunk afresh, and on a fine-grained grasp two consecutive chunks may pick
different gripper modes (each chunk's own gripper column is clean, 0 or 1). Re-planned every few control steps,
that opens the gripper 0.1–0.3 s after a close that had contact and drops the block. Demonstrations never switch
the gripper faster than a grasp or a release takes, so a dwell of about one grasp (~1 s) removes only the chatter.
Measured in docs/data.md ("Gripper dwell").
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass
class GripperDwell:
    index: int                      # the gripper's action dimension
    threshold: float                # above: closed (the midpoint of its position range)
    min_dwell_s: float              # after a switch, the opposite command waits this long
    _closed: bool | None = None     # the side last obeyed (None: nothing commanded yet)
    _switched_at: float = -math.inf
    _value: float = math.nan        # the last obeyed gripper command: what a suppressed switch keeps sending
    suppressed: int = 0             # commands whose gripper value was replaced (diagnostics)

    def reset(self) -> None:
        """Forget the history (on activation or resume): the first command after it is obeyed and starts a dwell."""
        self._closed, self._switched_at, self._value = None, -math.inf, math.nan

    def apply(self, command: np.ndarray, now: float) -> tuple[np.ndarray, bool]:
        """The command with its gripper value held on the current side while the dwell lasts; and whether it was."""
        value = float(command[self.index])
        closed = value > self.threshold
        if self._closed is None:   # the first command: the gripper is on this side from now on
            self._closed, self._value, self._switched_at = closed, value, now
            return command, False
        if closed == self._closed:
            self._value = value
            return command, False
        if now - self._switched_at >= self.min_dwell_s - 1e-9:
            self._closed, self._value, self._switched_at = closed, value, now
            return command, False
        held = np.array(command, dtype=np.float64)
        held[self.index] = self._value
        self.suppressed += 1
        return held, True
