"""The chunk executor and the memory node as real processes brought up by the embedded runner, from a profile.

The test side plays the robot (joint_states) and the action expert (ActionChunk), and watches the controller
commands and /diagnostics.
"""
import math
import time

import numpy as np
import pytest

pytestmark = [pytest.mark.ros, pytest.mark.slow]

ARM = ['arm_joint1', 'arm_joint2', 'arm_joint3', 'arm_joint4', 'arm_joint5', 'arm_joint6', 'arm_joint7', 'gripper']
DT = 0.1
FIRST_ROWS = 30  # 3 s: 12 commands still come if the chunk reaches the executor up to ~1.5 s late on a busy machine


@pytest.fixture
def stack(tmp_path):
    from ros_graph import Probe

    from pi07_bringup.graph import build_graph
    from pi07_bringup.profile import load_profile
    from pi07_bringup.runner import EmbeddedRunner

    specs = build_graph(load_profile('sim_arm7'), nodes=['memory', 'chunk_executor'], parameter_overrides={
        'memory': {'storage_dir': str(tmp_path / 'memory'), 'stride_s': 0.2},
        'chunk_executor': {'stop_after_s': 0.6, 'joint_state_timeout_s': 0.5}})
    runner = EmbeddedRunner(specs, log_dir=str(tmp_path / 'logs'), echo=False)
    probe = Probe('executor_test')
    runner.start()
    try:
        runner.bring_up(timeout=120)
        yield runner, probe
    finally:
        probe.stop()
        runner.shutdown()


def chunk_msg(probe, start, values, sequence, names=ARM):
    from pi07_common.node_utils import sec_to_stamp

    from pi07_msgs.msg import ActionChunk

    values = np.asarray(values, dtype=np.float32)
    msg = ActionChunk(sequence=sequence, names=names, control_mode='joint', horizon=len(values),
                      action_dim=len(names), dt=DT, mode='rtc')
    msg.header.stamp = sec_to_stamp(start)
    msg.actions = [float(v) for v in values.ravel()]
    return msg


def ramp(horizon, start_value, slope):
    return np.array([[start_value + slope * k * DT] * 7 + [0.5] for k in range(horizon)])


def test_executor_streams_holds_stops_and_obeys_stop_topic(stack):
    from diagnostic_msgs.msg import DiagnosticArray
    from ros_graph import diagnostics_of
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Bool, Float64MultiArray

    from pi07_msgs.msg import ActionChunk

    runner, probe = stack
    node = probe.node
    commands = probe.record(Float64MultiArray, 'forward_position_controller/commands')
    diagnostics = probe.record(DiagnosticArray, '/diagnostics')
    chunk_pub = node.create_publisher(ActionChunk, 'action_chunk', 10)
    stop_pub = node.create_publisher(Bool, 'stop', 10)
    state_pub = node.create_publisher(JointState, 'joint_states', 10)
    joint_value = {'v': 0.0}

    def publish_state():
        msg = JointState(name=ARM, position=[joint_value['v']] * 8)
        msg.header.stamp = node.get_clock().now().to_msg()
        state_pub.publish(msg)
    node.create_timer(0.05, publish_state)
    # every link matched both ways before the first chunk: a late match would drop commands from the count below
    assert probe.wait_for(lambda: chunk_pub.get_subscription_count() > 0 and stop_pub.get_subscription_count() > 0
                          and state_pub.get_subscription_count() > 0)
    assert probe.wait_for(lambda: probe.publisher_count(commands) > 0 and probe.publisher_count(diagnostics) > 0)
    time.sleep(1.0)
    assert probe.messages(commands) == [], 'commands before any chunk'

    # 1. Streams a chunk at the control rate, following it in time.
    t0 = probe.now()
    since = time.monotonic()
    chunk_pub.publish(chunk_msg(probe, t0, ramp(FIRST_ROWS, 0.0, 0.2), sequence=1))
    assert probe.wait_for(lambda: len(probe.messages(commands, since)) >= 12, timeout=10)
    got = probe.messages(commands, since)
    values = np.array([m.data[0] for m in got])
    assert np.all(np.diff(values) >= -1e-9) and values[-1] > values[0]  # follows the ramp
    times = probe.times(commands, since)
    # the median interval: one message delivered late (DDS on a busy machine) must not skew the rate
    rate = 1.0 / float(np.median(np.diff(times)))
    assert 7.0 < rate < 13.0, f'command rate {rate:.1f} Hz, expected ~10'

    # 2. Holds after the chunk ends, then stops.
    assert probe.wait_for(lambda: any('stopped' in s.message for s in diagnostics_of(probe, diagnostics,
                                                                                     'chunk_executor')), 10)
    held = probe.messages(commands)[-1].data
    # held at the chunk's end (between its last two rows, by tick phase), never extrapolated beyond it
    assert all(0.2 * (FIRST_ROWS - 2) * DT - 1e-6 <= v <= 0.2 * (FIRST_ROWS - 1) * DT + 1e-6 for v in held[:7]), held
    quiet_since = time.monotonic()
    time.sleep(0.6)
    assert probe.messages(commands, quiet_since) == [], 'commands after stopping for stale chunks'

    # 3. Stopped for staleness, it moves again only when released (stop=false) and a fresh chunk arrives.
    stop_pub.publish(Bool(data=False))
    time.sleep(0.3)
    since = time.monotonic()
    chunk_pub.publish(chunk_msg(probe, probe.now(), ramp(30, 0.5, 0.0), sequence=2))
    assert probe.wait_for(lambda: len(probe.messages(commands, since)) >= 3, timeout=5)

    # 4. The stop topic stops it at once.
    stop_pub.publish(Bool(data=True))
    stop_time = time.monotonic()
    time.sleep(0.8)
    after = probe.times(commands, stop_time + 0.15)
    assert after == [], f'{len(after)} commands after stop'
    assert probe.wait_for(lambda: any('stop topic' in s.message for s in diagnostics_of(
        probe, diagnostics, 'chunk_executor', stop_time)), 5)

    # 5. Released, a chunk for another embodiment (wrong dimensions) is rejected with a diagnostic.
    stop_pub.publish(Bool(data=False))
    time.sleep(0.3)
    since = time.monotonic()
    chunk_pub.publish(chunk_msg(probe, probe.now(), np.zeros((20, 5)), sequence=3, names=['x', 'y', 'z', 'yaw', 'g']))
    assert probe.wait_for(lambda: any('another embodiment' in s.message for s in diagnostics_of(
        probe, diagnostics, 'chunk_executor', since)), 5)
    time.sleep(0.5)
    assert probe.messages(commands, since) == []

    # 6. NaN joint states stop a running executor with an ERROR diagnostic.
    since = time.monotonic()
    chunk_pub.publish(chunk_msg(probe, probe.now(), ramp(40, 0.3, 0.0), sequence=4))
    assert probe.wait_for(lambda: len(probe.messages(commands, since)) >= 3, timeout=5)
    joint_value['v'] = math.nan
    nan_time = time.monotonic()
    assert probe.wait_for(lambda: any(s.level == b'\x02' and 'NaN' in s.message for s in diagnostics_of(
        probe, diagnostics, 'chunk_executor', nan_time)), 5), \
        [(s.level, s.message) for s in diagnostics_of(probe, diagnostics, 'chunk_executor', nan_time)]
    time.sleep(0.4)
    assert probe.messages(commands, time.monotonic() - 0.2) == []
    joint_value['v'] = 0.0

    # 7. Deactivated, it commands nothing even with fresh chunks.
    stop_pub.publish(Bool(data=False))
    runner.transition('chunk_executor', 'deactivate')
    since = time.monotonic()
    chunk_pub.publish(chunk_msg(probe, probe.now(), ramp(20, 0.1, 0.0), sequence=5))
    time.sleep(1.0)
    assert probe.messages(commands, since) == []


def test_memory_survives_a_restart_of_its_node(tmp_path):
    from pi07_common.images import rgb_to_image
    from pi07_common.qos import LATCHED
    from ros_graph import Probe
    from sensor_msgs.msg import Image

    from pi07_bringup.graph import build_graph
    from pi07_bringup.profile import load_profile
    from pi07_bringup.runner import EmbeddedRunner
    from pi07_msgs.msg import LanguageMemory, Task, VisualMemory
    from pi07_msgs.srv import ResetMemory

    specs = build_graph(load_profile('sim_arm7'), nodes=['memory'], parameter_overrides={
        'memory': {'storage_dir': str(tmp_path / 'memory'), 'stride_s': 0.2, 'frames_per_camera': 3}})
    probe = Probe('memory_test')
    node = probe.node
    task_pub = node.create_publisher(Task, 'task', LATCHED)
    update_pub = node.create_publisher(LanguageMemory, 'memory/language_update', 10)
    image_pubs = {c: node.create_publisher(Image, f'camera/{c}/image_raw', 10) for c in ('scene', 'wrist')}
    task_pub.publish(Task(task_id='t1', instruction='put the red block in the bowl'))
    try:
        for attempt in range(2):
            memory = probe.record(LanguageMemory, 'memory/language', LATCHED, key=f'language{attempt}')
            visual = probe.record(VisualMemory, 'memory/visual', key=f'visual{attempt}')
            runner = EmbeddedRunner(specs, log_dir=str(tmp_path / f'logs{attempt}'), echo=False)
            runner.start()
            try:
                runner.bring_up(timeout=120)
                if attempt == 0:
                    assert probe.wait_for(lambda: update_pub.get_subscription_count() > 0)
                    update = LanguageMemory(task_id='t1', summary='the red block is in the bowl', subtask_index=2)
                    update_pub.publish(update)
                    assert probe.wait_for(lambda k=memory: any(m.revision == 1 for m in probe.messages(k)), 15)
                    # visual memory: frames at the stride, camera-major
                    for k in range(8):
                        for c, pub in image_pubs.items():
                            pub.publish(rgb_to_image(np.full((96, 96, 3), k, np.uint8),
                                                     stamp=node.get_clock().now().to_msg(), frame_id=c))
                        time.sleep(0.1)
                    assert probe.wait_for(lambda v=visual: any(len(m.camera_names) == 2 for m in probe.messages(v)), 10)
                    last = [m for m in probe.messages(visual) if len(m.camera_names) == 2][-1]
                    assert last.frames_per_camera == 3 and len(last.frames) == 6 and last.task_id == 't1'
                else:
                    # restored from disk, published latched for the current task
                    assert probe.wait_for(lambda memory=memory: any(
                        m.revision == 1 and m.summary == 'the red block is in the bowl'
                        for m in probe.messages(memory)), 20), \
                        [(m.task_id, m.revision) for m in probe.messages(memory)]
                    client = node.create_client(ResetMemory, 'memory/reset')
                    assert client.wait_for_service(timeout_sec=10)
                    future = client.call_async(ResetMemory.Request(task_id='t1', language=True))
                    assert probe.wait_for(future.done, 10) and future.result().success
                    assert probe.wait_for(lambda memory=memory: probe.messages(memory)[-1].revision == 0, 10)
            finally:
                runner.shutdown()
    finally:
        probe.stop()
