"""Two processes exchange every pi07_msgs message, call every service and run the action over real DDS.

Every field of every message is set to a non-default value and compared after the round trip through a second
process (which deserialises and serialises again), so a broken field — lost, truncated, or defined differently
on one side — fails the test.
"""
import sys
import time
from pathlib import Path

import pytest
from interface_values import fields_differ_from_default, filled

pytestmark = pytest.mark.ros
PEER = Path(__file__).parent / 'peers' / 'msgs_peer.py'
TIMEOUT = 30.0


@pytest.fixture
def ros_node():
    import rclpy
    from rclpy.node import Node

    owns = not rclpy.ok()
    if owns:
        rclpy.init()
    node = Node('interface_test')
    yield node
    node.destroy_node()
    if owns:
        rclpy.try_shutdown()


def spin_until(node, predicate, timeout=TIMEOUT):
    import rclpy

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        rclpy.spin_once(node, timeout_sec=0.05)
    return predicate()


def test_every_message_service_and_action_cross_process(ros_node, spawn):
    from rclpy.action import ActionClient

    import pi07_msgs.msg as pi07_msg
    from pi07_msgs.action import ExecuteTask
    from pi07_msgs.srv import Interject, ResetEpisode, ResetMemory

    peer = spawn([sys.executable, PEER], name='msgs_peer')
    types = {name: cls for name, cls in vars(pi07_msg).items()
             if isinstance(cls, type) and hasattr(cls, 'get_fields_and_field_types') and not name.startswith('_')}
    assert {'Task', 'EpisodeMetadata', 'Subtask', 'SubgoalImages', 'ActionChunk', 'LanguageMemory',
            'VisualMemory', 'TaskStatus', 'EndEffectorTarget'} <= set(types)

    received = {name: [] for name in types}
    publishers = {}
    for name, cls in types.items():
        publishers[name] = ros_node.create_publisher(cls, f'in/{name}', 10)
        ros_node.create_subscription(cls, f'out/{name}', lambda msg, name=name: received[name].append(msg), 10)

    # Wait for both directions of every topic to match (discovery can take seconds on a loaded machine).
    assert spin_until(ros_node, lambda: all(p.get_subscription_count() > 0 for p in publishers.values())
                      and all(ros_node.count_publishers(f'out/{n}') > 0 for n in types)), peer.output()
    time.sleep(0.5)  # the peer's publishers must also have matched our subscriptions

    sent = {}
    for seed, (name, cls) in enumerate(sorted(types.items()), start=1):
        msg = filled(cls(), seed)
        assert not fields_differ_from_default(msg), (name, fields_differ_from_default(msg))
        sent[name] = msg
        publishers[name].publish(msg)
    assert spin_until(ros_node, lambda: all(received[n] for n in types)), \
        f'no echo for {[n for n in types if not received[n]]}'
    for name, msg in sent.items():
        echoed = received[name][0]
        for field in msg.get_fields_and_field_types():
            assert getattr(echoed, field) == getattr(msg, field), f'{name}.{field} changed across processes'
        assert echoed == msg

    # Services.
    for srv_type, service, fill_seed in ((Interject, 'interject', 3), (ResetMemory, 'reset_memory', 4),
                                         (ResetEpisode, 'reset_episode', 5)):
        client = ros_node.create_client(srv_type, service)
        assert client.wait_for_service(timeout_sec=TIMEOUT), service
        request = filled(srv_type.Request(), fill_seed)
        future = client.call_async(request)
        assert spin_until(ros_node, future.done), service
        response = future.result()
        if srv_type is Interject:
            assert response.accepted and response.message == f'heard: {request.text}'
            assert response.subtask == request.text  # filled() sets as_subtask = True
        elif srv_type is ResetMemory:
            assert response.success and request.task_id in response.message
        else:
            assert response.success and response.message == f'seed {request.seed}'
            assert response.task.task_id == f'{request.task_family}-{request.seed}'
            assert len(response.task.plan) == request.seed % 5 and response.task.metadata.quality == 5

    # Action: goal with a full Task, one feedback per plan step, a result derived from the goal.
    client = ActionClient(ros_node, ExecuteTask, 'execute_task')
    assert client.wait_for_server(timeout_sec=TIMEOUT)
    goal = ExecuteTask.Goal(task=filled(pi07_msg.Task(), 9), timeout_s=12.5)
    feedback = []
    send_future = client.send_goal_async(goal, feedback_callback=lambda fb: feedback.append(fb.feedback))
    assert spin_until(ros_node, send_future.done)
    handle = send_future.result()
    assert handle.accepted
    result_future = handle.get_result_async()
    assert spin_until(ros_node, result_future.done)
    result = result_future.result().result
    assert result.success and result.summary == goal.task.instruction
    assert result.subtasks_done == len(goal.task.plan) and result.duration_s == pytest.approx(12.5)
    assert [f.subtask for f in feedback] == list(goal.task.plan)
    assert feedback[-1].progress == pytest.approx(1.0)
    client.destroy()
