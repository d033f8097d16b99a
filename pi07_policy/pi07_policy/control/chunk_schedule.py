"""Executing action chunks by time: the newest chunk that covers `now`, clamped to the robot's limits.

A chunk is H actions, dt apart, whose first row is meant to run at `start_time`. The executor ticks at the control
rate; at each tick it takes the newest chunk (highest sequence) that covers the tick's time and interpolates
between its rows. With Real-Time Chunking the new chunk's first d rows repeat what the previous chunk does during
the inference delay, so the switch is smooth; with synchronous inference it may jump, and the velocity limit is
the last line of defence.
"""
from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field

import numpy as np

from .gripper_dwell import GripperDwell


class ChunkError(ValueError):
    """A chunk that cannot be executed (shape, NaN, wrong dimensions)."""


@dataclass(frozen=True)
class Chunk:
    start_time: float         # s, time of row 0 (ActionChunk.header.stamp)
    dt: float                 # s between rows
    actions: np.ndarray       # (H, D) float64, robot units
    sequence: int = 0
    frozen_prefix: int = 0
    observation_time: float = math.nan

    @property
    def end_time(self) -> float:
        """Time of the last row: the chunk covers [start_time, end_time]."""
        return self.start_time + (len(self.actions) - 1) * self.dt

    def covers(self, t: float) -> bool:
        return self.start_time - 1e-9 <= t <= self.end_time + 1e-9

    def at(self, t: float) -> np.ndarray:
        """The action at time t, linearly interpolated between rows (clamped to the chunk's ends)."""
        x = (t - self.start_time) / self.dt
        if x <= 0:
            return self.actions[0].copy()
        last = len(self.actions) - 1
        if x >= last:
            return self.actions[last].copy()
        k = int(x)
        w = x - k
        return (1 - w) * self.actions[k] + w * self.actions[k + 1]


def make_chunk(start_time: float, dt: float, flat_actions, horizon: int, action_dim: int, expected_dim: int,
               sequence: int = 0, frozen_prefix: int = 0, observation_time: float = math.nan) -> Chunk:
    """Validate an ActionChunk's fields and build a Chunk, or raise ChunkError saying what is wrong."""
    if action_dim != expected_dim:
        raise ChunkError(f'chunk has action_dim {action_dim}, the robot expects {expected_dim}')
    if horizon < 1:
        raise ChunkError('chunk has no actions (horizon 0)')
    if not (dt > 0 and math.isfinite(dt)):
        raise ChunkError(f'chunk dt {dt} is not a positive number')
    actions = np.asarray(flat_actions, dtype=np.float64)
    if actions.size != horizon * action_dim:
        raise ChunkError(f'chunk has {actions.size} values, expected horizon*action_dim = {horizon * action_dim}')
    actions = actions.reshape(horizon, action_dim)
    if not np.isfinite(actions).all():
        raise ChunkError('chunk contains NaN or infinite actions')
    return Chunk(start_time, dt, actions, sequence, frozen_prefix, observation_time)


@dataclass(frozen=True)
class Limits:
    """Per action dimension: position bounds and maximum speed (units/s); from the embodiment profile."""
    position_min: np.ndarray
    position_max: np.ndarray
    velocity_max: np.ndarray

    @staticmethod
    def from_lists(position_min, position_max, velocity_max) -> Limits:
        lo, hi, vmax = (np.asarray(v, dtype=np.float64) for v in (position_min, position_max, velocity_max))
        if not (lo.shape == hi.shape == vmax.shape) or lo.ndim != 1:
            raise ValueError(f'limits must be three lists of one length, got {lo.shape}, {hi.shape}, {vmax.shape}')
        if (lo > hi).any() or (vmax <= 0).any():
            raise ValueError('limits need position_min <= position_max and velocity_max > 0')
        return Limits(lo, hi, vmax)

    @property
    def dim(self) -> int:
        return len(self.position_min)

    def clamp(self, target: np.ndarray, previous: np.ndarray | None, dt: float) -> tuple[np.ndarray, bool]:
        """Clamp to the position bounds, then limit the step from ``previous`` to velocity_max * dt.

        Returns the command and whether anything was clamped."""
        command = np.clip(target, self.position_min, self.position_max)
        if previous is not None:
            step = np.clip(command - previous, -self.velocity_max * dt, self.velocity_max * dt)
            command = np.clip(previous + step, self.position_min, self.position_max)
        return command, not np.allclose(command, target, atol=1e-9)


class ExecutorState(enum.Enum):
    INACTIVE = 'inactive'   # lifecycle node not active: commands nothing
    WAITING = 'waiting'     # active, no chunk covers now yet (and nothing to hold)
    RUNNING = 'running'     # executing a chunk
    HOLDING = 'holding'     # chunks went stale: holding the last command
    STOPPED = 'stopped'     # stop requested, stale for too long, or bad robot state: commanding nothing


@dataclass
class TickResult:
    command: np.ndarray | None       # what to send now (None: send nothing)
    state: ExecutorState
    clamped: bool = False
    chunk_sequence: int | None = None
    reason: str = ''


@dataclass
class ChunkExecutorCore:
    """The executor's decisions at each control tick, free of ROS (the node feeds it time, chunks and state)."""
    limits: Limits
    control_dt: float
    stop_after_s: float = 1.0        # holding longer than this → STOPPED
    max_chunks: int = 8
    state: ExecutorState = ExecutorState.INACTIVE
    last_command: np.ndarray | None = None
    stop_reason: str = ''
    _chunks: list[Chunk] = field(default_factory=list)
    _holding_since: float | None = None
    _final_command_pending: np.ndarray | None = None
    switches: int = 0
    _current_sequence: int | None = None
    _may_hold: bool = False          # a chunk ran since activation / resume: holding its last command is safe
    gripper_dwell: GripperDwell | None = None   # a binary gripper's minimum time between switches

    # --- inputs ---------------------------------------------------------------------------------------------
    def activate(self) -> None:
        self.state = ExecutorState.WAITING
        self._chunks.clear()
        self.last_command = None
        self._holding_since = None
        self._may_hold = False
        self.stop_reason = ''
        if self.gripper_dwell is not None:
            self.gripper_dwell.reset()

    def deactivate(self) -> None:
        self.state = ExecutorState.INACTIVE
        self._chunks.clear()

    def add_chunk(self, chunk: Chunk, now: float) -> bool:
        """Queue a chunk; chunks that end before now, or older than the newest one, are dropped."""
        if chunk.actions.shape[1] != self.limits.dim:
            raise ChunkError(f'chunk has {chunk.actions.shape[1]} dimensions, limits have {self.limits.dim}')
        if chunk.end_time < now:
            return False
        if self._chunks and chunk.sequence <= self._chunks[-1].sequence:
            return False
        self._chunks.append(chunk)
        del self._chunks[:-self.max_chunks]
        return True

    def stop(self, reason: str, current_position: np.ndarray | None = None) -> None:
        """Stop at once: one last command (the measured position, or the last command) and then nothing."""
        if self.state is ExecutorState.INACTIVE:
            return
        if self.state is not ExecutorState.STOPPED:
            hold = current_position if current_position is not None else self.last_command
            self._final_command_pending = None if hold is None else np.clip(
                hold, self.limits.position_min, self.limits.position_max)
        self.state = ExecutorState.STOPPED
        self.stop_reason = reason
        self._chunks.clear()

    def resume(self) -> None:
        """Leave STOPPED; the next chunk that covers now starts motion again."""
        if self.state is ExecutorState.STOPPED:
            self.state = ExecutorState.WAITING
            self.stop_reason = ''
            self._holding_since = None
            # Never re-send a pre-stop target on resume; last_command stays as the velocity-limit reference.
            self._may_hold = False
            if self.gripper_dwell is not None:
                self.gripper_dwell.reset()

    # --- the tick ---------------------------------------------------------------------------------------------
    def tick(self, now: float) -> TickResult:
        if self.state is ExecutorState.INACTIVE:
            return TickResult(None, self.state, reason='inactive')
        if self.state is ExecutorState.STOPPED:
            final, self._final_command_pending = self._final_command_pending, None
            if final is not None:
                self.last_command = final
            return TickResult(final, self.state, reason=self.stop_reason)
        self._chunks = [c for c in self._chunks if c.end_time >= now - 1e-9]
        covering = [c for c in self._chunks if c.covers(now)]
        if covering:
            chunk = max(covering, key=lambda c: c.sequence)
            if self._current_sequence is not None and chunk.sequence != self._current_sequence:
                self.switches += 1
            self._current_sequence = chunk.sequence
            target = chunk.at(now)
            if self.gripper_dwell is not None:
                target, _ = self.gripper_dwell.apply(target, now)
            command, clamped = self.limits.clamp(target, self.last_command, self.control_dt)
            self.last_command = command
            self.state = ExecutorState.RUNNING
            self._holding_since = None
            self._may_hold = True
            return TickResult(command, self.state, clamped, chunk.sequence)
        if self.last_command is None or not self._may_hold:
            self.state = ExecutorState.WAITING
            return TickResult(None, self.state, reason='no chunk covers now')
        if self._holding_since is None:
            self._holding_since = now
        if now - self._holding_since > self.stop_after_s:
            self.stop(f'no fresh chunk for {now - self._holding_since:.2f} s')
            return self.tick(now)
        self.state = ExecutorState.HOLDING
        return TickResult(self.last_command.copy(), self.state, reason='chunks stale: holding')
