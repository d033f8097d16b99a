"""Command handling the way real controllers do it, in plain Python (the ROS node only unpacks messages).

- forward position controller: one absolute target per command interface, held until the next command;
- joint trajectory controller: points reached at ``start + time_from_start``, linear interpolation between them
  (from the target held when the trajectory arrived), the last point held; a new trajectory replaces the old;
- end-effector target: tool x, y, z, yaw + gripper (the gantry's joints are those coordinates; the arm goes
  through inverse kinematics).

Every command is validated first; an invalid one raises ``CommandRejected`` with the reason and changes nothing.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LIMIT_TOLERANCE = 1e-6


class CommandRejected(ValueError):
    """A command that was not applied; ``str(error)`` says why."""


def check_values(values, names: list[str], low: np.ndarray, high: np.ndarray, what: str) -> np.ndarray:
    """``values`` as an array, or CommandRejected if the size is wrong, a value is not finite or out of limits."""
    values = np.asarray(values, dtype=float).reshape(-1)
    if values.shape[0] != len(names):
        raise CommandRejected(f'{what}: {values.shape[0]} values, expected {len(names)} ({", ".join(names)})')
    bad = ~np.isfinite(values)
    if bad.any():
        raise CommandRejected(f'{what}: non-finite value for {", ".join(n for n, b in zip(names, bad) if b)}')
    outside = (values < low - LIMIT_TOLERANCE) | (values > high + LIMIT_TOLERANCE)
    if outside.any():
        details = ', '.join(f'{n}={v:.4g} not in [{lo:.4g}, {hi:.4g}]'
                            for n, v, lo, hi, o in zip(names, values, low, high, outside) if o)
        raise CommandRejected(f'{what}: out of limits: {details}')
    return values


@dataclass
class Trajectory:
    """A validated joint trajectory over a subset of the joints, in absolute time (seconds)."""

    joint_index: np.ndarray  # (J,) indices into the full target vector
    start_time: float
    times: np.ndarray  # (P,) time_from_start of each point, strictly increasing, >= 0
    positions: np.ndarray  # (P, J)
    initial: np.ndarray  # (J,) target held when the trajectory arrived

    def sample(self, now: float) -> np.ndarray:
        """Target positions of the trajectory's joints at time ``now``."""
        tau = now - self.start_time
        if tau < 0.0:
            return self.initial.copy()
        times = np.concatenate([[0.0], self.times])
        points = np.vstack([self.initial[None], self.positions])
        if tau >= times[-1]:
            return points[-1].copy()
        k = int(np.searchsorted(times, tau, side='right')) - 1
        span = times[k + 1] - times[k]
        alpha = 1.0 if span <= 0 else (tau - times[k]) / span
        return points[k] + alpha * (points[k + 1] - points[k])

    def end_time(self) -> float:
        return self.start_time + float(self.times[-1])


def make_trajectory(joint_names: list[str], times: list[float], positions: list[list[float]], start_time: float,
                    all_names: list[str], low: np.ndarray, high: np.ndarray,
                    current_target: np.ndarray) -> Trajectory:
    """Validate a JointTrajectory's content (names, point sizes, values, timing) into a ``Trajectory``."""
    if not joint_names:
        raise CommandRejected('trajectory: no joint names')
    if len(set(joint_names)) != len(joint_names):
        raise CommandRejected('trajectory: duplicate joint names')
    unknown = [n for n in joint_names if n not in all_names]
    if unknown:
        raise CommandRejected(f'trajectory: unknown joints {", ".join(unknown)} (known: {", ".join(all_names)})')
    if not positions:
        raise CommandRejected('trajectory: no points')
    index = np.array([all_names.index(n) for n in joint_names])
    rows = [check_values(p, joint_names, low[index], high[index], f'trajectory point {k}')
            for k, p in enumerate(positions)]
    times_arr = np.asarray(times, dtype=float)
    if not np.all(np.isfinite(times_arr)) or np.any(times_arr < 0):
        raise CommandRejected('trajectory: time_from_start must be finite and >= 0')
    if np.any(np.diff(times_arr) <= 0):
        raise CommandRejected('trajectory: time_from_start must increase strictly from point to point')
    return Trajectory(index, float(start_time), times_arr, np.vstack(rows),
                      np.asarray(current_target, dtype=float)[index].copy())


class CommandState:
    """The target the robot's controllers hold, updated by the three command interfaces."""

    def __init__(self, names: list[str], low: np.ndarray, high: np.ndarray, initial: np.ndarray):
        self.names = list(names)
        self.low = np.asarray(low, dtype=float)
        self.high = np.asarray(high, dtype=float)
        self.target = np.asarray(initial, dtype=float).copy()
        self.trajectory: Trajectory | None = None

    def reset(self, initial: np.ndarray) -> None:
        self.target = np.asarray(initial, dtype=float).copy()
        self.trajectory = None

    def forward(self, values) -> np.ndarray:
        """Forward position controller command: all targets at once; cancels a running trajectory."""
        self.target = check_values(values, self.names, self.low, self.high, 'position command')
        self.trajectory = None
        return self.target

    def follow(self, joint_names: list[str], times: list[float], positions: list[list[float]],
               start_time: float, now: float) -> Trajectory:
        """Joint trajectory: replaces any running trajectory; the current target is its starting point."""
        self.target = self.sample(now)
        self.trajectory = make_trajectory(joint_names, times, positions, start_time, self.names, self.low,
                                          self.high, self.target)
        return self.trajectory

    def sample(self, now: float) -> np.ndarray:
        """The target at time ``now`` (advances a running trajectory)."""
        if self.trajectory is not None:
            self.target[self.trajectory.joint_index] = self.trajectory.sample(now)
        return self.target.copy()
