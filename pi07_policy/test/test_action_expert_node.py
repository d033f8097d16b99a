"""The action expert node's handling of tasks, in this process:

- it restarts its flow noise from (seed, task id) on each new task: a task's chunks then do not depend on how many
  chunks the node computed for the tasks before it;
- a task's first subtask that arrives before the Task itself (two writers: nothing orders them) is kept, and a
  subtask of another task is not acted on;
- with gripper_confirm_lead_s, a chunk whose gripper switch is planned too far ahead is cut short of it, and the
  next chunk is computed with the robot still, played from its first row, before it goes asynchronous again.

The node is configured from the sim arm's profile with a small random checkpoint; the tests call its callbacks
and its inference step directly (DDS delivery is not what is checked here: test/test_stack_on_sim.py runs it)."""
import numpy as np
import pytest

pytestmark = [pytest.mark.ros, pytest.mark.slow]


@pytest.fixture(scope='module')
def node(tmp_path_factory):
    from inprocess_node import configured_node

    from pi07_policy.nodes.action_expert import ActionExpertNode

    expert = configured_node(ActionExpertNode, 'action_expert', tmp_path_factory.mktemp('checkpoints'))
    assert expert._policy is not None
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


def test_subtask_before_its_task_is_kept_and_another_tasks_is_not_used(node):
    from pi07_common.images import rgb_to_image
    from pi07_common.node_utils import sec_to_stamp
    from sensor_msgs.msg import JointState

    from pi07_msgs.msg import Subtask, Task

    size = int(node.get_parameter('image_size').value)
    joints = [n for n in node.get_parameter('joint_names').value if n]

    def observed_subtask():
        stamp = sec_to_stamp(node._now())
        for camera in node.get_parameter('cameras').value:
            node._on_image(camera, rgb_to_image(np.zeros((size, size, 3), np.uint8), stamp=stamp))
        state = JointState(name=joints, position=[0.0] * len(joints))
        state.header.stamp = stamp
        node._on_joint_state(state)
        return node._observation()[0]['subtask']

    node._on_task(Task(task_id='t1', instruction='put the red block in the bowl'))
    node._on_subtask(Subtask(task_id='t1', text='pick up the red block'))
    assert observed_subtask() == 'pick up the red block'
    # t2's first subtask arrives before t2's Task: not t1's to act on, and still there once t2 arrives
    node._on_subtask(Subtask(task_id='t2', text='pick up the blue block'))
    assert observed_subtask() is None
    node._on_task(Task(task_id='t2', instruction='put the blue block in the bowl'))
    assert observed_subtask() == 'pick up the blue block'
    # a new task drops the last one's subtask; a subtask with no task id (a person's) applies to the running task
    node._on_task(Task(task_id='t3', instruction='put the blue block in the bowl'))
    assert observed_subtask() is None
    node._on_subtask(Subtask(text='pick up the green block'))
    assert observed_subtask() == 'pick up the green block'


def test_visual_memory_of_another_task_is_not_used(node):
    from pi07_common.images import rgb_to_image
    from pi07_common.node_utils import sec_to_stamp
    from sensor_msgs.msg import JointState

    from pi07_msgs.msg import Task, VisualMemory

    size = int(node.get_parameter('image_size').value)
    cameras = list(node.get_parameter('cameras').value)
    joints = [n for n in node.get_parameter('joint_names').value if n]

    def observed_memory():
        stamp = sec_to_stamp(node._now())
        for camera in cameras:
            node._on_image(camera, rgb_to_image(np.zeros((size, size, 3), np.uint8), stamp=stamp))
        state = JointState(name=joints, position=[0.0] * len(joints))
        state.header.stamp = stamp
        node._on_joint_state(state)
        memory = node._observation()[0].get('memory_images')
        return None if memory is None else int(memory[cameras[0]][0][0, 0, 0])

    def memory_of(task_id: str, value: int) -> VisualMemory:
        msg = VisualMemory(task_id=task_id, camera_names=cameras, frames_per_camera=2, stride_s=1.0)
        msg.frames = [rgb_to_image(np.full((size, size, 3), value, np.uint8)) for _ in range(2 * len(cameras))]
        return msg

    node._on_task(Task(task_id='m1', instruction='put the red block in the bowl'))
    node._on_memory(memory_of('m1', 11))
    assert observed_memory() == 11
    node._on_task(Task(task_id='m2', instruction='put the blue block in the bowl'))
    assert observed_memory() is None                 # a new task: the last one's frames show another scene
    node._on_memory(memory_of('m1', 12))            # m1's, delivered after m2 began
    assert observed_memory() is None
    node._on_memory(memory_of('m2', 21))
    assert observed_memory() == 21
    node._on_memory(memory_of('', 30))              # a memory node that has seen no task yet: taken as is
    assert observed_memory() == 30


def test_a_gripper_switch_planned_too_far_ahead_waits_for_a_chunk_from_the_robot_standing_still(tmp_path):
    from inprocess_node import configured_node

    from pi07_policy.nodes.action_expert import ActionExpertNode

    node = configured_node(ActionExpertNode, 'action_expert', tmp_path,
                           overrides={'mode': 'rtc', 'gripper_name': 'gripper', 'gripper_confirm_lead_s': 0.3,
                                      'rtc_delay_margin_s': 0.0})
    try:
        horizon, dim = node._policy.config.action_horizon, len([n for n in node.get_parameter('action_names').value
                                                                if n])
        clock, published, requests = [100.0], [], []
        closes_at = [6, 1, 0]   # the row each chunk closes the gripper from

        def infer(obs):   # a slow model: 0.4 s per chunk
            requests.append(obs)
            clock[0] += 0.4
            actions = np.tile(np.arange(horizon, dtype=np.float32)[:, None], (1, dim))
            actions[:, -1] = np.arange(horizon) >= closes_at[len(requests) - 1]
            return {'actions': actions, 'mode': obs['mode']}

        node._policy.infer = infer
        node._now = lambda: clock[0]
        node._running = True   # as if active; chunks go to the recorder below
        node._chunk_pub = type('Recorder', (), {'publish': lambda self, msg: published.append(msg)})()
        obs = {'images': {}, 'state': np.zeros(dim, np.float32), 'task': 'put the red block in the bowl',
               'subtask': 'pick up the red block'}

        node._infer_and_publish(dict(obs))   # arrives at its row 4, 0.4 s late: its close at row 6 waits
        first = np.asarray(published[0].actions).reshape(-1, dim)
        assert len(first) == horizon
        np.testing.assert_array_equal(first[6:], np.tile(first[5], (horizon - 6, 1)))
        assert (first[:, -1] == 0).all() and node._confirming
        assert node._waiting()   # the next observation waits until the robot stands there
        clock[0] = 100.6
        assert not node._waiting()

        node._infer_and_publish(dict(obs))   # from the robot standing still: no prefix, its rows within 0.3 s
        second = np.asarray(published[1].actions).reshape(-1, dim)
        assert 'prev_actions' not in requests[1]
        assert len(second) == 4 and list(second[:, -1]) == [0, 1, 1, 1]
        assert abs(published[1].header.stamp.sec + published[1].header.stamp.nanosec * 1e-9 - 101.0) < 1e-6
        assert not node._confirming and not node._waiting()   # this chunk closes: asynchronous again

        node._infer_and_publish(dict(obs))
        assert requests[2]['mode'] == 'rtc' and len(published) == 3
    finally:
        node._running = False
        node.trigger_cleanup()
        node.destroy_node()


def test_a_chunk_that_arrives_in_time_makes_its_own_switches(tmp_path):
    from inprocess_node import configured_node

    from pi07_policy.nodes.action_expert import ActionExpertNode

    node = configured_node(ActionExpertNode, 'action_expert', tmp_path,
                           overrides={'mode': 'rtc', 'gripper_confirm_lead_s': 0.3, 'rtc_delay_margin_s': 0.0})
    try:
        horizon, dim = node._policy.config.action_horizon, len([n for n in node.get_parameter('action_names').value
                                                                if n])
        actions = np.tile(np.arange(horizon, dtype=np.float32)[:, None], (1, dim))
        actions[:, -1] = np.arange(horizon) >= 6
        clock = [100.0]

        def infer(obs):   # 0.1 s per chunk: it arrives at its row 1, planned within the 0.3 s lead
            clock[0] += 0.1
            return {'actions': actions, 'mode': obs['mode']}

        node._policy.infer = infer
        node._now = lambda: clock[0]
        published = []
        node._running = True
        node._chunk_pub = type('Recorder', (), {'publish': lambda self, msg: published.append(msg)})()
        node._infer_and_publish({'images': {}, 'state': np.zeros(dim, np.float32), 'task': 'x', 'subtask': 'y'})
        np.testing.assert_array_equal(np.asarray(published[0].actions).reshape(-1, dim), actions)
        assert not node._confirming
    finally:
        node._running = False
        node.trigger_cleanup()
        node.destroy_node()


def test_a_gripper_gate_without_a_gripper_name_is_a_configuration_error(tmp_path):
    from inprocess_node import configured_node
    from lifecycle_msgs.msg import State

    from pi07_policy.nodes.action_expert import ActionExpertNode

    node = configured_node(ActionExpertNode, 'action_expert', tmp_path, overrides={'gripper_confirm_lead_s': 0.3,
                                                                                        'gripper_name': ''})
    try:
        assert node._state_machine.current_state[0] == State.PRIMARY_STATE_UNCONFIGURED
    finally:
        node.destroy_node()
