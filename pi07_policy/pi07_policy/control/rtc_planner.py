"""Real-Time Chunking bookkeeping on the action expert's side (no ROS, no torch).

Before each inference the expert asks: which previous actions will the robot execute while this inference
runs? With an observation at t_obs and an expected delay δ, the new chunk starts at t0 (t_obs snapped onto the
previous chunk's time grid, so rows line up), its first d = ceil((t_obs + δ - t0) / dt) + 1 rows are frozen to
what the previous chunk does then (the + 1: the executor interpolates toward the next row), and the rest of the
previous chunk's remainder (up to the execution horizon s) is inpainted with decaying guidance (arXiv 2506.07339).
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PublishedChunk:
    start_time: float
    dt: float
    actions: np.ndarray   # (H, D), robot units


@dataclass(frozen=True)
class RTCRequest:
    start_time: float                 # t0: when row 0 of the new chunk is to run
    prev_actions: np.ndarray | None   # the previous chunk's rows from t0 on (None: sample from scratch)
    delay_steps: int                  # d: rows to freeze
    execution_horizon: int            # s: rows of prev_actions to inpaint (>= d)


def plan_request(prev: PublishedChunk | None, t_obs: float, dt: float, expected_delay_s: float,
                 execution_horizon: int) -> RTCRequest:
    if prev is None or abs(prev.dt - dt) > 1e-6:
        return RTCRequest(t_obs, None, 0, 0)
    k0 = max(0, round((t_obs - prev.start_time) / dt))
    remaining = prev.actions[k0:]
    if len(remaining) == 0:
        return RTCRequest(t_obs, None, 0, 0)  # the previous chunk is over: nothing to join
    start_time = prev.start_time + k0 * dt
    # The chunk arrives at x = (t_obs + delay - t0) / dt rows in; the executor interpolates between rows, so it
    # then runs between rows floor(x) and ceil(x): freezing up to ceil(x) makes the switch exact.
    arrival_row = max(0.0, (t_obs + expected_delay_s - start_time) / dt)
    delay_steps = min(len(remaining), math.ceil(arrival_row - 1e-9) + 1)
    horizon = min(len(remaining), max(execution_horizon, delay_steps))
    return RTCRequest(start_time, remaining, delay_steps, horizon)


class LatencyEstimator:
    """Inference latency (s) from recent runs, leaving out the first ``skip`` (cold start: allocation, caches).

    The estimate is the largest of the last ``window`` runs: underestimating the delay unfreezes actions the
    robot is already executing, overestimating only freezes a row more."""

    def __init__(self, skip: int = 1, window: int = 5, initial_s: float = 0.0):
        self.skip = skip
        self.initial_s = initial_s
        self._seen = 0
        self._recent: deque[float] = deque(maxlen=window)

    def add(self, latency_s: float) -> None:
        self._seen += 1
        if self._seen > self.skip:
            self._recent.append(latency_s)

    def estimate(self) -> float:
        return max(self._recent) if self._recent else self.initial_s

    @property
    def samples(self) -> list[float]:
        return list(self._recent)
