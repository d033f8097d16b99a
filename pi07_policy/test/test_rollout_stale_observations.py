"""The rollout harness's latency model: the policy sees the observation of k control steps ago."""
from pi07_policy.data.rollout import StaleObservations


class CountingEnv:
    """Observation = number of steps taken since reset."""

    def __init__(self):
        self.steps = 0
        self.task = 'count'

    def reset(self, seed=None):
        self.steps = 0
        return {'step': 0}

    def step(self, action):
        self.steps += 1
        return {'step': self.steps}


def test_observations_lag_by_k_steps_and_the_rest_is_the_live_env():
    env = StaleObservations(CountingEnv(), steps=2)
    assert env.reset(seed=1) == {'step': 0}
    seen = [env.step(None)['step'] for _ in range(5)]
    assert seen == [0, 0, 1, 2, 3]          # two steps behind once the buffer is full
    assert env.steps == 5 and env.task == 'count'   # progress, task, time: the live environment
    assert env.reset()['step'] == 0 and env.step(None)['step'] == 0
    assert [StaleObservations(CountingEnv(), 0).step(None)['step'] for _ in range(1)] == [1]
