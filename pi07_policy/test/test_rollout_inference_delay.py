"""The rollout harness's real-time model: chunks arrive `inference_delay_steps` after their observation, the one
before plays on meanwhile, and RTC joins them as the action expert plans it (rtc_planner.plan_request)."""
import numpy as np
import pytest
from rollout_envs import RecordingEnv

from pi07_policy.data.rollout import run_episode

H = 10


class CountingPolicy:
    """Chunk n (0-based) has rows 1000 n + i; in RTC mode its first delay_steps rows are the previous ones."""

    def __init__(self):
        self.requests = []

    def infer(self, obs):
        n = len(self.requests)
        self.requests.append(obs)
        actions = (1000.0 * n + np.arange(H, dtype=np.float32))[:, None]
        frozen = 0
        if obs.get('mode') == 'rtc':
            frozen = obs['delay_steps']
            actions[:frozen] = obs['prev_actions'][:frozen]
        return {'actions': actions, 'frozen_steps': frozen, 'inference_ms': 1.0}


def run(**kwargs):
    env, policy = RecordingEnv(), CountingPolicy()
    run_episode(policy, env, 0, subtask_source='none', **kwargs)
    return [a for a, in env.executed], policy.requests


def test_without_delay_each_chunk_plays_its_first_execute_steps_rows():
    executed, requests = run(execute_steps=2)
    assert len(requests) == 7
    assert executed[:6] == [0, 1, 1000, 1001, 2000, 2001]
    assert all(r['mode'] == 'sync' for r in requests)


def test_sync_chunks_arrive_late_and_jump_to_the_row_for_now():
    executed, requests = run(execute_steps=2, inference_delay_steps=3)
    # steps 0-2: nothing has arrived, the robot holds; chunk 0 (observed at 0) from step 3 on, row 3 first;
    # chunk 1 (asked for at step 3, when chunk 0 arrived) from step 6, at its row 3: a jump from 5 to 1003
    assert executed[:9] == [-7, -7, -7, 3, 4, 5, 1003, 1004, 1005]
    assert len(requests) == 5   # back to back: one every 3 steps


def test_rtc_freezes_what_plays_during_the_delay_so_the_switch_is_continuous():
    executed, requests = run(execute_steps=2, inference_delay_steps=3, chunking='rtc', execution_horizon=8)
    assert requests[0]['mode'] == 'sync'   # nothing to join yet
    second = requests[1]
    assert second['mode'] == 'rtc'
    np.testing.assert_array_equal(second['prev_actions'][:, 0], np.arange(3, H))   # chunk 0 from step 3 on
    assert second['delay_steps'] == 4   # rows 3..6 of chunk 0: the 3 delayed steps + the one interpolated toward
    assert second['execution_horizon'] == 7   # 8, clamped to the 7 rows chunk 0 still has
    # chunk 1 starts at step 3 and arrives at step 6, at its row 3 = chunk 0's row 6: no jump; then its own rows
    assert executed[3:9] == [3, 4, 5, 6, 1004, 1005]


def test_pause_holds_the_robot_while_each_chunk_is_computed_then_plays_it_from_row_0():
    executed, requests = run(execute_steps=2, inference_delay_steps=3, chunking='pause')
    # chunk 0 (asked at 0) arrives at 3 and plays rows 0-1; chunk 1 is asked for only then (step 5), the robot
    # holding row 1 meanwhile, and plays from its row 0 at step 8: synchronous, no row skipped, time lost
    assert executed == [-7, -7, -7, 0, 1, 1, 1, 1, 1000, 1001, 1001, 1001, 1001, 2000]
    assert len(requests) == 3 and all(r['mode'] == 'sync' for r in requests)
    assert run(execute_steps=2, chunking='pause')[0] == run(execute_steps=2)[0]   # no delay: the same as sync


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match='chunking'):
        run(chunking='async')
    with pytest.raises(ValueError, match='inference_delay_steps'):
        run(inference_delay_steps=-1)


@pytest.mark.parametrize('keep_first', [False, True])
def test_rollout_memory_is_laid_out_as_the_memory_node_publishes_it(keep_first):
    """The rollout's memory frames and pi07_memory's snapshot hold the same frames in the same slots, plain and
    with the first-frame keyframe (both use pi07_common.memory_layout)."""
    from pi07_memory.store import VisualMemory
    from pi07_policy.data.rollout import MemoryFrames
    rollout, node = MemoryFrames(4, 1.0, keep_first=keep_first), VisualMemory(['c'], 4, 1.0, keep_first=keep_first)
    for step in range(0, 75):   # 7.5 s at 10 Hz
        t = step / 10
        frame = np.full((2, 2, 3), step, np.uint8)
        rollout.add({'c': frame}, t)
        node.offer('c', t, frame)
        if step in (0, 25, 74):
            assert [int(f[0, 0, 0]) for f in rollout.get()['c']] == [int(f[0, 0, 0]) for _, f in node.snapshot()['c']]
    assert int(rollout.get()['c'][0][0, 0, 0]) == (0 if keep_first else 40)
