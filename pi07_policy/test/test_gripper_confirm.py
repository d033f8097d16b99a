"""Gripper switches planned far ahead of their observation wait for a fresh one (control/gripper_confirm.py), in
the rollout harness's real-time model: the robot holds, a chunk is computed from the present, played from row 0."""
from types import SimpleNamespace

import numpy as np
import pytest

from pi07_policy.control.gripper_confirm import GripperSwitchConfirm
from pi07_policy.data.rollout import run_episode

H = 10


def test_a_switch_needs_confirmation_only_when_planned_further_ahead_than_the_lead():
    gate = GripperSwitchConfirm(index=1, threshold=0.5, max_lead_s=0.3)
    closing = np.array([0.0, 1.0])
    assert gate.needs_confirmation(closing, commanded_closed=False, lead_s=0.4)
    assert not gate.needs_confirmation(closing, commanded_closed=False, lead_s=0.3)   # fresh enough
    assert not gate.needs_confirmation(closing, commanded_closed=True, lead_s=0.9)    # no switch
    assert not gate.needs_confirmation(closing, commanded_closed=None, lead_s=0.9)    # nothing commanded yet
    with pytest.raises(ValueError, match='max_lead_s'):
        GripperSwitchConfirm(1, 0.5, float('nan'))


def test_a_fresh_chunk_plays_up_to_a_switch_the_gate_accepts():
    gate = GripperSwitchConfirm(index=1, threshold=0.5, max_lead_s=0.3)
    actions = np.array([[0, 0], [0, 0], [0, 0], [0, 1], [0, 1]], float)
    assert gate.rows_to_play(actions, False, 0.1, rows=2) == 4   # the switch at row 3 (0.3 s) is reached
    assert gate.rows_to_play(actions[:, ::-1] * 0, False, 0.1, rows=2) == 2   # no switch
    late = np.array([[0, 0]] * 5 + [[0, 1]] * 5, float)
    assert gate.rows_to_play(late, False, 0.1, rows=2) == 2   # a switch 0.5 s ahead: not from this chunk


class GripperEnv:
    """An axis and a gripper (0 open, 1 closed); records what it is given; holds its last command."""

    control_period = 0.1

    def __init__(self, length=14):
        self.length = length
        self.task = SimpleNamespace(instruction='grasp', plan=['a'])
        self.action_spec = SimpleNamespace(control_mode='joint', low=np.array([-1e9, 0.0]),
                                           high=np.array([1e9, 1.0]))

    def _obs(self):
        return {'images': {}, 'state': np.zeros(2, np.float32), 'time': self.time}

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
        return np.array(self.executed[-1]) if self.executed else np.array([-7.0, 0.0])

    def done(self):
        return self.steps >= self.length

    def progress(self):
        return 0, 1

    def success(self):
        return False


class SwitchingPolicy:
    """Chunk n: axis rows 1000 n + i; the gripper closes from row switch_rows[n] on."""

    def __init__(self, switch_rows):
        self.switch_rows, self.requests = switch_rows, []

    def infer(self, obs):
        n = len(self.requests)
        self.requests.append(obs)
        rows = np.arange(H, dtype=np.float32)
        actions = np.stack([1000.0 * n + rows, (rows >= self.switch_rows[n]).astype(np.float32)], axis=1)
        if obs.get('mode') == 'rtc':
            actions[:obs['delay_steps']] = obs['prev_actions'][:obs['delay_steps']]
        return {'actions': actions, 'frozen_steps': obs.get('delay_steps', 0), 'inference_ms': 1.0}


def run(confirm_s, chunking='sync'):
    env, policy = GripperEnv(), SwitchingPolicy([5, 5, 1, 0, 0])
    result = run_episode(policy, env, 0, subtask_source='none', execute_steps=2, inference_delay_steps=3,
                         chunking=chunking, gripper_confirm_s=confirm_s)
    return env.executed, policy.requests, result


def test_without_the_gate_the_robot_closes_on_a_plan_half_a_second_old():
    executed, _, result = run(0.0)
    assert [g for _, g in executed[:6]] == [0, 0, 0, 0, 0, 1]   # chunk 0's row 5, observed at step 0
    assert 'gripper_confirmations' not in result


@pytest.mark.parametrize('chunking', ['sync', 'rtc'])
def test_with_the_gate_the_robot_holds_and_closes_from_a_fresh_chunk(chunking):
    executed, requests, result = run(0.25, chunking)
    axis, gripper = [a for a, _ in executed], [g for _, g in executed]
    # steps 3-4: chunk 0's rows 3-4; step 5: its row 5 would close 0.5 s after its observation, so the robot holds
    # (chunk 1, on its way, is dropped) and chunk 2 is asked for at step 5: it arrives at step 8 and plays from
    # row 0 up to its switch (row 1); the next chunk is asked for when those rows are played
    assert axis[3:10] == [3, 4, 4, 4, 4, 2000, 2001]
    assert gripper[:9] == [0] * 9 and gripper[9] == 1
    assert 'prev_actions' not in requests[2] and requests[2]['mode'] == 'sync'   # from the present, no prefix
    assert result['gripper_confirmations'] == 1
    assert axis[10:] == [2001, 2001, 2001, 3003]   # chunk 3 (asked at 10) arrives at 13, at its row 3
    assert len(requests) == 5   # and the next is asked for at once: asynchronous again
