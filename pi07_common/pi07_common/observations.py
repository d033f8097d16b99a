"""Assembling observations from camera and joint-state streams, with the checks the model nodes share.

``CameraBuffer`` keeps the newest decoded frame per camera (decoded on arrival: 96-224 px costs microseconds)
and the reason a camera is unusable; ``assemble`` turns the newest samples into one observation or says why it
cannot (a missing or stale camera, images too far apart in time from the joint state, NaN joint state).
Plain Python: tested without DDS.
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field

import numpy as np

from pi07_common.images import ImageError, image_to_rgb


class ObservationError(RuntimeError):
    """Why no observation can be assembled now (the node reports it as a diagnostic and does not act)."""


@dataclass
class Sample:
    stamp: float          # s, from the message header
    value: np.ndarray


@dataclass
class CameraBuffer:
    cameras: list[str]
    image_size: int
    resize: bool
    _frames: dict[str, Sample] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, camera: str, msg, stamp: float) -> str | None:
        """Decode and keep a frame; return an error text (and remember it) if the image is unusable."""
        try:
            frame = image_to_rgb(msg, size=self.image_size, resize=self.resize)
        except ImageError as exc:
            with self._lock:
                self.errors[camera] = str(exc)
                self._frames.pop(camera, None)  # never act on an older frame while the camera is broken
            return str(exc)
        with self._lock:
            self.errors.pop(camera, None)
            self._frames[camera] = Sample(stamp, frame)
        return None

    def latest(self) -> dict[str, Sample]:
        with self._lock:
            return dict(self._frames)

    def ages(self, now: float) -> dict[str, float]:
        frames = self.latest()
        return {c: (now - frames[c].stamp) if c in frames else math.inf for c in self.cameras}


@dataclass
class JointStateBuffer:
    names: list[str]
    latest: Sample | None = None
    error: str = ''

    def add(self, msg_names, positions, stamp: float) -> str | None:
        index = {n: i for i, n in enumerate(msg_names)}
        missing = [n for n in self.names if n not in index]
        if missing:
            return None  # joint states of another part of the robot
        if len(positions) < len(msg_names):
            self.error = f'joint_states has {len(positions)} positions for {len(msg_names)} names'
            return self.error
        value = np.array([positions[index[n]] for n in self.names], dtype=np.float32)
        if not np.isfinite(value).all():
            self.error = f'joint_states has NaN/inf for {[n for n, v in zip(self.names, value) if not np.isfinite(v)]}'
            self.latest = None
            return self.error
        self.error = ''
        self.latest = Sample(stamp, value)
        return None


def assemble(cameras: CameraBuffer, state: JointStateBuffer | None, now: float, *, max_age_s: float,
             stamp_tolerance_s: float) -> tuple[dict[str, np.ndarray], np.ndarray | None, float]:
    """Newest images (+ joint state) as one observation: (images, state, stamp of the newest sample).

    Raises ObservationError when a camera is broken, missing or older than ``max_age_s``, the joint state is
    bad or stale, or the samples are more than ``stamp_tolerance_s`` apart.
    """
    if cameras.errors:
        raise ObservationError('; '.join(f'camera {c}: {e}' for c, e in sorted(cameras.errors.items())))
    frames = cameras.latest()
    missing = [c for c in cameras.cameras if c not in frames]
    if missing:
        raise ObservationError(f'no image yet from camera(s) {", ".join(missing)}')
    stamps = {f'camera {c}': frames[c].stamp for c in cameras.cameras}
    state_value = None
    if state is not None:
        if state.error:
            raise ObservationError(state.error)
        if state.latest is None:
            raise ObservationError(f'no joint_states yet with {", ".join(state.names)}')
        stamps['joint_states'] = state.latest.stamp
        state_value = state.latest.value
    stale = {k: now - t for k, t in stamps.items() if now - t > max_age_s}
    if stale:
        raise ObservationError('stale input: ' + ', '.join(f'{k} is {age:.2f} s old' for k, age in stale.items()))
    spread = max(stamps.values()) - min(stamps.values())
    if spread > stamp_tolerance_s:
        raise ObservationError(f'inputs {spread * 1e3:.0f} ms apart (tolerance {stamp_tolerance_s * 1e3:.0f} ms): '
                               + ', '.join(f'{k}={t:.3f}' for k, t in stamps.items()))
    return {c: frames[c].value for c in cameras.cameras}, state_value, max(stamps.values())
