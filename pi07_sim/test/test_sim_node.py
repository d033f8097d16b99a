"""The ``sim`` node across processes: rates, types, stamps, commands (good and bad), reset, /clock mode."""
import sys
import time

import numpy as np
import pytest
import sim_probe
from sim_probe import spin_until

probe = sim_probe.probe  # the shared fixture

pytestmark = pytest.mark.ros


def sim_args(**params) -> list[str]:
    args = [sys.executable, '-m', 'pi07_sim.sim_node', '--ros-args']
    for key, value in params.items():
        args += ['-p', f'{key}:={str(value).lower() if isinstance(value, bool) else value}']
    return args


def stamp_s(msg) -> float:
    return msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9


def test_gantry_sim_rates_stamps_commands_and_reset(spawn, probe):
    from rclpy.qos import DurabilityPolicy, QoSProfile
    from sensor_msgs.msg import Image, JointState
    from std_msgs.msg import Float64MultiArray

    from pi07_msgs.msg import Task, TaskStatus
    from pi07_msgs.srv import ResetEpisode
    from pi07_sim.ros_messages import ee_target_msg

    node, executor = probe
    sim = spawn(sim_args(embodiment='gantry', image_size=48, camera_rate_hz=10.0, joint_state_rate_hz=50.0),
                name='sim')
    got = {k: [] for k in ('scene', 'wrist', 'joints', 'task', 'status')}

    def keep(key):
        return lambda msg: got[key].append((msg, time.time()))

    node.create_subscription(Image, 'camera/scene/image_raw', keep('scene'), 10)
    node.create_subscription(Image, 'camera/wrist/image_raw', keep('wrist'), 10)
    node.create_subscription(JointState, 'joint_states', keep('joints'), 50)
    node.create_subscription(TaskStatus, 'task_status', keep('status'), 10)
    node.create_subscription(Task, 'task', keep('task'), QoSProfile(depth=1,
                                                                     durability=DurabilityPolicy.TRANSIENT_LOCAL))
    commands = node.create_publisher(Float64MultiArray, 'forward_position_controller/commands', 10)
    from pi07_msgs.msg import EndEffectorTarget
    ee_targets = node.create_publisher(EndEffectorTarget, 'ee_target', 10)
    assert spin_until(executor, lambda: got['joints'] and got['scene'] and got['task'], 40), sim.output()

    # Rates and stamps over a 3 s window.
    for key in got:
        got[key].clear()
    spin_until(executor, lambda: False, 3.0)
    for key, rate in (('scene', 10.0), ('wrist', 10.0), ('joints', 50.0)):
        stamps = np.array([stamp_s(m) for m, _ in got[key]])
        received = np.array([t for _, t in got[key]])
        assert len(stamps) >= 0.6 * rate * 3.0, (key, len(stamps))
        assert np.all(np.diff(stamps) > 0), key
        assert np.median(np.diff(stamps)) == pytest.approx(1.0 / rate, rel=0.1), key
        assert np.median(np.abs(received - stamps)) < 0.5, key  # stamped in wall time, across processes
    image = got['scene'][-1][0]
    assert (image.encoding, image.width, image.height, image.step) == ('rgb8', 48, 48, 144)
    assert image.header.frame_id == 'scene_camera_optical'
    assert got['wrist'][-1][0].header.frame_id == 'wrist_camera_optical'
    joints = got['joints'][-1][0]
    assert list(joints.name) == ['gantry_x', 'gantry_y', 'gantry_z', 'gantry_yaw', 'gripper']
    status = got['status'][-1][0]
    assert status.state == TaskStatus.STATE_RUNNING and status.subtasks_total == 4
    assert status.current_subtask.startswith('pick up the')

    def position() -> np.ndarray:
        return np.array(got['joints'][-1][0].position)

    # A good command moves the robot.
    target = [0.1, -0.1, 0.2, 0.3, 0.0]
    commands.publish(Float64MultiArray(data=target))
    assert spin_until(executor, lambda: np.abs(position() - target).max() < 0.01, 5.0), position()
    # Bad ones are rejected with a reason, and the robot holds.
    for bad in ([0.1, 0.1, 0.2], [float('nan'), 0.0, 0.2, 0.0, 0.0], [5.0, 0.0, 0.2, 0.0, 0.0]):
        commands.publish(Float64MultiArray(data=bad))
    assert sim.wait_for_output('gantry_x=5 not in', 5.0), sim.output()
    spin_until(executor, lambda: False, 1.0)
    assert 'expected 5' in sim.output() and 'non-finite value for gantry_x' in sim.output()
    assert np.abs(position() - target).max() < 0.01
    # End-effector target (the gantry's joints are the tool's x, y, z, yaw).
    ee_targets.publish(ee_target_msg(np.array([0.0, 0.1, 0.15, -0.4, 0.0])))
    assert spin_until(executor, lambda: np.abs(position()[:4] - [0.0, 0.1, 0.15, -0.4]).max() < 0.01, 5.0)

    # Reset with a seed and a task family.
    client = node.create_client(ResetEpisode, 'reset_episode')
    assert client.wait_for_service(timeout_sec=10.0)
    future = client.call_async(ResetEpisode.Request(seed=4, task_family='restore_layout'))
    assert spin_until(executor, future.done, 10.0)
    response = future.result()
    assert response.success and response.task.task_id.startswith('gantry/restore_layout/4/')
    assert len(response.task.plan) == 4 and 'tray' in response.task.plan[1]
    assert spin_until(executor, lambda: got['task'] and got['task'][-1][0].task_id == response.task.task_id, 5.0)
    future = client.call_async(ResetEpisode.Request(seed=1, task_family='juggling'))
    assert spin_until(executor, future.done, 10.0)
    assert not future.result().success and 'juggling' in future.result().message


def test_arm_sim_publishes_clock_and_follows_trajectories(spawn, probe):
    from builtin_interfaces.msg import Duration
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import JointState
    from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

    node, executor = probe
    sim = spawn(sim_args(embodiment='arm7', image_size=32, publish_clock=True, real_time=False), name='sim')
    clock, joints = [], []
    node.create_subscription(Clock, '/clock', lambda m: clock.append((m.clock.sec + m.clock.nanosec * 1e-9,
                                                                      time.monotonic())), 10)
    node.create_subscription(JointState, 'joint_states', joints.append, 50)
    trajectories = node.create_publisher(JointTrajectory, 'joint_trajectory_controller/joint_trajectory', 10)
    assert spin_until(executor, lambda: joints and clock, 40), sim.output()
    spin_until(executor, lambda: False, 2.0)
    (sim0, wall0), (sim1, wall1) = clock[len(clock) // 4], clock[-1]
    assert (sim1 - sim0) / (wall1 - wall0) > 1.0  # faster than real time
    assert stamp_s(joints[-1]) <= sim1 + 0.05  # stamped in simulated time

    def joint1() -> float:
        return joints[-1].position[0]

    start = joint1()
    point = JointTrajectoryPoint(positions=[start + 0.4], time_from_start=Duration(sec=1))
    trajectories.publish(JointTrajectory(joint_names=['arm_joint1'], points=[point]))
    assert spin_until(executor, lambda: abs(joint1() - (start + 0.4)) < 0.01, 10.0), joint1()
    bad = JointTrajectory(joint_names=['elbow'], points=[JointTrajectoryPoint(positions=[0.0])])
    trajectories.publish(bad)
    assert sim.wait_for_output('unknown joints elbow', 5.0), sim.output()

    # The arm also takes end-effector targets (inverse kinematics in the sim), and refuses unreachable ones.
    from pi07_msgs.msg import EndEffectorTarget
    from pi07_sim.env import TabletopEnv
    from pi07_sim.ros_messages import ee_target_msg

    kinematics = TabletopEnv('arm7', 'ordered_place', render=False).ik
    ee_targets = node.create_publisher(EndEffectorTarget, 'ee_target', 10)
    goal = np.array([0.05, 0.08, 0.2])
    spin_until(executor, lambda: ee_targets.get_subscription_count() > 0, 10.0)
    ee_targets.publish(ee_target_msg(np.array([*goal, 0.3, 0.0])))

    def tcp_error() -> float:
        return float(np.linalg.norm(kinematics.forward(np.array(joints[-1].position[:7]))[0] - goal))

    assert spin_until(executor, lambda: tcp_error() < 0.01, 10.0), tcp_error()
    ee_targets.publish(ee_target_msg(np.array([1.5, 0.0, 0.2, 0.0, 0.0])))
    assert sim.wait_for_output('out of reach', 5.0), sim.output()
