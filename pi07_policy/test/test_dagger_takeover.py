"""DAgger data: a policy drives the sim for a while, the scripted expert takes over and only its part is recorded;
the bags convert into ordinary training episodes."""
import numpy as np

from pi07_policy.data.convert import convert
from pi07_policy.data.dagger import collect_takeovers
from pi07_policy.data.profile_spec import load_profile_spec
from pi07_sim.env import TabletopEnv


class DriftingPolicy:
    """Stands in for a poor learned policy: drifts the gantry's tool sideways and down, gripper closed."""

    def infer(self, request):
        state = np.asarray(request['state'], np.float32)
        steps = np.arange(1, 11, dtype=np.float32)[:, None]
        chunk = np.repeat(state[None], 10, axis=0)
        chunk[:, :3] += steps * np.array([0.004, -0.004, -0.004], np.float32)
        chunk[:, 4] = 1.0
        return {'actions': chunk, 'inference_ms': 0.0}


def test_takeover_episodes_are_expert_labelled_bags(tmp_path):
    env = TabletopEnv('gantry', 'ordered_place', image_size=32)
    results = collect_takeovers(DriftingPolicy(), env, tmp_path / 'bags', [20000, 20001], takeover_s=(2.0, 3.0),
                                progress=False)
    env.close()
    assert [r['bag'] for r in results] == ['gantry_ordered_place_takeover_s20000',
                                           'gantry_ordered_place_takeover_s20001']
    assert all(r['variant'] == 'takeover' and r['success'] and 2.0 <= r['takeover_s'] <= 3.0 for r in results)
    # recording starts at the takeover: the episode is shorter than the whole run by the policy's part
    assert all(r['duration_s'] - r['takeover_s'] > 3.0 for r in results)
    index = convert([tmp_path / 'bags'], tmp_path / 'ds', load_profile_spec('sim_gantry'), progress=False,
                    log=lambda *a: None)
    assert len(index['episodes']) == 2 and not index['skipped'], index['skipped']
    episode = index['episodes'][0]
    assert episode['subtasks'] == episode['plan'] and episode['metadata']['quality'] == 5
    assert episode['length'] <= round((results[0]['duration_s'] - results[0]['takeover_s']) * 10) + 1
