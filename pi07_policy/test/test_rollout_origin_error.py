"""A rollout on the memory task reports how far the block to put back ended from where it started (the put-back
subtask's tolerance is ORIGIN_TOLERANCE); other tasks report nothing of the kind."""
import numpy as np

from pi07_policy.data.rollout import run_episode
from pi07_sim.env import TabletopEnv
from pi07_sim.tasks import ORIGIN_TOLERANCE


class HoldingPolicy:
    """Holds the robot where it is (the block stays where it started)."""

    def infer(self, request):
        return {'actions': np.repeat(np.asarray(request['state'], np.float32)[None], 10, axis=0), 'inference_ms': 0.0}


def test_origin_error_of_the_moved_block():
    env = TabletopEnv('gantry', 'restore_layout', image_size=32)
    try:
        result = run_episode(HoldingPolicy(), env, 3, execute_steps=5, max_time_s=1.0)
        moved = next(s.obj for s in env.task.subtasks if s.target == 'origin')
        assert set(result['origin_error_m']) == {moved}
        assert result['origin_error_m'][moved] < 0.2 * ORIGIN_TOLERANCE      # never touched: it settled in place
    finally:
        env.close()
    other = TabletopEnv('gantry', 'ordered_place', image_size=32)
    try:
        assert 'origin_error_m' not in run_episode(HoldingPolicy(), other, 3, execute_steps=5, max_time_s=0.5)
    finally:
        other.close()
