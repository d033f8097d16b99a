"""The action expert node restarts its flow noise from (seed, task id) on each new task: a task's chunks then
do not depend on how many chunks the node computed for the tasks before it.

The node runs in this process, configured from the sim arm's profile with a small random checkpoint; the test
calls its task callback and its inference step directly (no DDS traffic is needed to check this logic)."""
import numpy as np
import pytest

pytestmark = [pytest.mark.ros, pytest.mark.slow]


@pytest.fixture(scope='module')
def node(tmp_path_factory):
    import rclpy
    from rclpy.parameter import Parameter
    from stack_checkpoints import make_checkpoints

    from pi07_bringup.graph import build_graph
    from pi07_bringup.profile import load_profile
    from pi07_policy.nodes.action_expert import ActionExpertNode

    profile = load_profile('sim_arm7')
    checkpoints = make_checkpoints(profile, tmp_path_factory.mktemp('checkpoints'))
    spec = next(s for s in build_graph(profile, nodes=['action_expert'], checkpoints=checkpoints)
                if s.name == 'action_expert')
    if not rclpy.ok():
        rclpy.init(args=[])
    expert = ActionExpertNode(parameter_overrides=[Parameter(k, value=v) for k, v in spec.parameters.items()])
    assert expert.trigger_configure() is not None and expert._policy is not None
    yield expert
    expert.trigger_cleanup()
    expert.destroy_node()


def test_flow_noise_restarts_per_task(node):
    from pi07_msgs.msg import Task

    size = int(node.get_parameter('image_size').value)
    cameras = list(node.get_parameter('cameras').value)
    joints = [n for n in node.get_parameter('joint_names').value if n]
    rng = np.random.default_rng(0)
    obs = {'images': {c: rng.integers(0, 255, (size, size, 3), dtype=np.uint8) for c in cameras},
           'state': np.zeros(len(joints), np.float32), 'task': 'put the red block on the blue one',
           'subtask': 'pick up the red block'}
    chunks = []
    real_infer = node._policy.infer
    node._policy.infer = lambda o: chunks.append(np.asarray(real_infer(o)['actions'])) or {'actions': chunks[-1]}

    def chunks_for(task_id: str, n: int) -> list[np.ndarray]:
        node._on_task(Task(task_id=task_id, instruction=obs['task']))
        start = len(chunks)
        for _ in range(n):
            node._infer_and_publish(dict(obs))   # inactive: computes the chunk, publishes nothing
        return chunks[start:]

    first_a = chunks_for('task-a', 2)
    chunks_for('task-b', 3)
    again_a = chunks_for('task-a', 1)
    assert len(first_a) == 2 and len(again_a) == 1
    np.testing.assert_array_equal(again_a[0], first_a[0])       # the same draws, after 3 chunks of another task
    assert not np.allclose(first_a[1], first_a[0])              # within a task the noise moves on
    # the same task id again (re-latched): no restart, the draws go on
    np.testing.assert_array_equal(chunks_for('task-a', 1)[0], first_a[1])
