"""The ``expert`` node closes the loop with the ``sim`` node over DDS (sim time, faster than real time)."""
import sys
import time

import pytest

pytestmark = pytest.mark.ros


def test_expert_node_drives_the_sim_to_success(spawn):
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import DurabilityPolicy, QoSProfile

    from pi07_msgs.msg import EpisodeMetadata, Subtask

    sim = spawn([sys.executable, '-m', 'pi07_sim.sim_node', '--ros-args', '-p', 'embodiment:=gantry',
                 '-p', 'image_size:=32', '-p', 'publish_clock:=true', '-p', 'real_time:=false'], name='sim')
    expert = spawn([sys.executable, '-m', 'pi07_sim.expert_node', '--ros-args', '-p', 'episodes:=1',
                    '-p', 'first_episode_seed:=2', '-p', 'task_family:=restore_layout', '-p', 'use_sim_time:=true'],
                   name='expert')
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node('expert_test_probe', context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    subtasks, metadata = [], []
    node.create_subscription(Subtask, 'subtask', subtasks.append, 50)
    node.create_subscription(EpisodeMetadata, 'episode_metadata', metadata.append,
                             QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL))
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and expert.proc.poll() is None:
            executor.spin_once(timeout_sec=0.05)
        assert 'done: 1/1 episodes succeeded' in expert.output(), expert.output() + sim.output()
        assert 'restore_layout/2/' in sim.output() and 'succeeded' in sim.output()
        texts = [m.text for m in subtasks]
        assert any(t.startswith('pick up the') for t in texts) and any('back where it was' in t for t in texts)
        assert all(m.source == Subtask.SOURCE_EXPERT for m in subtasks)
        assert metadata and metadata[-1].speed == 4 and metadata[-1].quality == 5 and metadata[-1].mistake == 0
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.shutdown(context=context)
