"""A stand-in for pi07_sim's TabletopEnv in tests of the rollout harness's real-time model (no physics, no
images): it records the actions it is given, and holds the last one as its target."""
from types import SimpleNamespace

import numpy as np


class RecordingEnv:
    """`dims` action dimensions (the last one a gripper, 0 open .. 1 closed, where dims > 1); an episode lasts
    `length` control steps of 0.1 s; before the first action its target is `initial`."""

    control_period = 0.1

    def __init__(self, length=14, initial=(-7.0,)):
        self.length, self.initial = length, np.array(initial, np.float64)
        low = np.full(len(initial), -1e9)
        high = np.full(len(initial), 1e9)
        if len(initial) > 1:
            low[-1], high[-1] = 0.0, 1.0
        self.task = SimpleNamespace(instruction='count', plan=['a'])
        self.action_spec = SimpleNamespace(control_mode='joint', low=low, high=high)

    def _obs(self):
        return {'images': {}, 'state': np.zeros(len(self.initial), np.float32), 'time': self.time}

    def reset(self, seed=None):
        self.steps, self.executed = 0, []
        return self._obs()

    def step(self, action):
        self.executed.append([float(v) for v in np.asarray(action)])
        self.steps += 1
        return self._obs()

    @property
    def time(self):
        return self.steps * self.control_period

    def current_target(self):
        return np.array(self.executed[-1]) if self.executed else self.initial.copy()

    def done(self):
        return self.steps >= self.length

    def progress(self):
        return 0, 1

    def success(self):
        return False
