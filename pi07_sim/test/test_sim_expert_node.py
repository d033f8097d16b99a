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
                    '-p', 'first_episode_seed:=2', '-p', 'task_family:=restore_layout', '-p', 'use_sim_time:=true',
                    '-p', 'linger_s:=20.0'],
                   name='expert')
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node('expert_test_probe', context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    subtasks, metadata = [], []
    latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    node.create_subscription(Subtask, 'subtask', subtasks.append, latched)
    node.create_subscription(EpisodeMetadata, 'episode_metadata', metadata.append, latched)
    try:
        deadline = time.monotonic() + 120
        def finished() -> bool:
            return bool(subtasks and subtasks[-1].task_done and metadata)

        while time.monotonic() < deadline and expert.proc.poll() is None and not finished():
            executor.spin_once(timeout_sec=0.05)
        assert expert.wait_for_output('episodes succeeded', 30)
        assert 'done: 1/1 episodes succeeded' in expert.output(), expert.output() + sim.output()
        assert 'restore_layout/2/' in sim.output() and 'succeeded' in sim.output()
        log = expert.output()
        for index, prefix in enumerate(['pick up the', 'place the', 'pick up the', 'put the']):
            assert f'subtask {index}: {prefix}' in log
        assert 'subtask 4:' not in log  # no retries needed on this seed
        # The topic is latched: whenever the probe matched, it gets the latest subtask, in the end "done".
        assert subtasks and subtasks[-1].task_done and subtasks[-1].text == ''
        assert all(m.source == Subtask.SOURCE_EXPERT for m in subtasks)
        assert metadata and metadata[-1].speed == 4 and metadata[-1].quality == 5 and metadata[-1].mistake == 0
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.shutdown(context=context)
