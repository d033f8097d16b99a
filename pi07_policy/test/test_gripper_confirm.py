"""Gripper switches planned far ahead of their observation wait for a fresh one (control/gripper_confirm.py), in
the rollout harness's real-time model: the robot holds, a chunk is computed from the present, played from row 0."""
import numpy as np
import pytest
from rollout_envs import RecordingEnv

from pi07_policy.control.gripper_confirm import GripperSwitchConfirm
from pi07_policy.data.rollout import run_episode

H = 10


def test_a_chunk_that_comes_too_late_is_cut_short_of_its_first_switch():
    gate = GripperSwitchConfirm(index=1, threshold=0.5, max_lead_s=0.3)
    chunk = np.array([[i, 0.0 if i < 5 else 1.0] for i in range(8)], np.float32)   # closes at row 5
    # its first row to play (row 4) was planned 0.4 s after the observation: the close waits
    held, row = gate.hold_before_switch(chunk, 0.0, first_row=4, row0_lead_s=0.0, dt=0.1)
    assert row == 5
    np.testing.assert_array_equal(held[:5], chunk[:5])
    np.testing.assert_array_equal(held[5:], np.tile([4.0, 0.0], (3, 1)))   # stands at row 4, gripper open
    assert held.dtype == chunk.dtype
    # in time: its first row to play planned within 0.3 s (row 2; or row 4 of a chunk starting 0.2 s early)
    assert gate.hold_before_switch(chunk, 0.0, 2, 0.0, 0.1)[1] is None
    assert gate.hold_before_switch(chunk, 0.0, 4, -0.2, 0.1)[1] is None
    held, row = gate.hold_before_switch(chunk, 1.0, 4, 0.0, 0.1)   # closed now: row 4 would open it
    assert row == 4 and (held[4:] == [3.0, 1.0]).all()
    assert gate.hold_before_switch(chunk, None, 4, 0.0, 0.1)[1] is None   # nothing commanded yet
    assert gate.hold_before_switch(chunk, 1.0, 6, 0.0, 0.1)[1] is None   # no switch in the rows it plays
    # the first played row already switches (a chunk sampled from scratch): it holds the commanded gripper there
    held, row = gate.hold_before_switch(chunk, 0.0, first_row=6, row0_lead_s=0.0, dt=0.1)
    assert row == 6 and held[6, 1] == 0.0 and held[6, 0] == 5.0
    with pytest.raises(ValueError, match='max_lead_s'):
        GripperSwitchConfirm(1, 0.5, float('nan'))


def test_a_chunk_from_a_still_robot_plays_the_rows_within_the_lead():
    gate = GripperSwitchConfirm(index=1, threshold=0.5, max_lead_s=0.3)
    assert gate.trusted_rows(0.1) == 4 and GripperSwitchConfirm(1, 0.5, 0.25).trusted_rows(0.1) == 3
    actions = np.array([[0, 0], [0, 0], [0, 1]], float)
    assert gate.switches(actions, 0.0) and not gate.switches(actions[:2], 0.0) and gate.switches(actions[:2], 1.0)


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
    env, policy = RecordingEnv(initial=(-7.0, 0.0)), SwitchingPolicy([5, 1, 0, 0, 0])
    result = run_episode(policy, env, 0, subtask_source='none', execute_steps=2, inference_delay_steps=3,
                         chunking=chunking, gripper_confirm_s=confirm_s)
    return env.executed, policy.requests, result


def test_without_the_gate_the_robot_closes_on_a_plan_half_a_second_old():
    executed, _, result = run(0.0)
    assert [g for _, g in executed[:6]] == [0, 0, 0, 0, 0, 1]   # chunk 0's row 5, observed at step 0
    assert 'gripper_confirmations' not in result


@pytest.mark.parametrize('chunking', ['sync', 'rtc'])
def test_with_the_gate_the_robot_stops_short_and_closes_from_a_fresh_chunk(chunking):
    executed, requests, result = run(0.25, chunking)
    axis, gripper = [a for a, _ in executed], [g for _, g in executed]
    # chunk 0 (observed at step 0) arrives at step 3, its row 3 planned 0.3 s ahead (> 0.25): its close at row 5
    # is cut, the robot standing at its row 4 from step 4; chunk 1 is asked for at step 5 with the robot still,
    # arrives at step 8 and plays its rows within 0.25 s (rows 0-2), closing at row 1; asynchronous again at once:
    # chunk 2, asked for at step 8, takes over at step 11 at its row 3 (the gripper stays closed: nothing to confirm)
    assert axis == [-7, -7, -7, 3, 4, 4, 4, 4, 1000, 1001, 1002, 2003, 2004, 2005]
    assert gripper == [0] * 9 + [1] * 5
    assert 'prev_actions' not in requests[1] and requests[1]['mode'] == 'sync'   # from the present, no prefix
    assert requests[2]['mode'] == chunking   # joined to chunk 1 under RTC
    assert len(requests) == 4 and result['gripper_confirmations'] == 1
