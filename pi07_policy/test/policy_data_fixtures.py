"""Small synthetic bags and a matching profile for the data/training tests (written with the `mcap` writer and
rclpy serialisation, as a recorder would: no simulator needed).

A robot with two joints + a gripper, cameras scene/wrist at 16 px. Episode of `steps` control steps at 10 Hz:
joint state at 50 Hz, the command at step t = state(t) + 0.1 * (t + 1) / steps (so alignment is checkable),
images whose mean brightness encodes the step, two subtasks (switch at steps // 2), task, metadata, task_status.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml
from rclpy.serialization import serialize_message
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float64MultiArray

from pi07_msgs.msg import EpisodeMetadata, Subtask, Task, TaskStatus

JOINTS = ['j1', 'j2', 'gripper']
PLAN = ['pick up the red block', 'place the red block in the bowl']
INSTRUCTION = 'put the red block in the bowl'
IMAGE = 16
BASE_NS = 1_700_000_000 * 10**9


def write_profile(path: Path) -> Path:
    profile = {
        'name': 'test_bot', 'embodiment': 'testbot', 'image_size': IMAGE,
        'cameras': {'scene': {'topic': 'camera/scene/image_raw'}, 'wrist': {'topic': 'camera/wrist/image_raw'}},
        'state': {'joint_names': JOINTS},
        'action': {'control_mode': 'joint', 'names': JOINTS, 'position_min': [-3, -3, 0], 'position_max': [3, 3, 1]},
        'control_rate_hz': 10.0,
        'controller': {'interface': 'forward_position', 'topic': 'forward_position_controller/commands'},
    }
    path.write_text(yaml.safe_dump(profile))
    return path


def joint_state_at(t_s: float, seed: int) -> np.ndarray:
    return np.array([np.sin(t_s + seed), np.cos(0.5 * t_s), min(1.0, t_s / 3)], np.float32)


def expected_action(step: int, steps: int, seed: int) -> np.ndarray:
    return joint_state_at(step * 0.1, seed) + np.float32(0.1 * (step + 1) / steps)


def _stamp(msg, ns: int):
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(ns, 10**9)
    return msg


def write_bag(directory: Path, steps: int = 30, seed: int = 0, skip_topics: tuple[str, ...] = (),
              truncate: bool = False) -> Path:
    """One episode as a bag directory `directory` (holding `<name>.mcap`)."""
    from mcap.writer import Writer
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f'{directory.name}.mcap'
    types = {'/camera/scene/image_raw': 'sensor_msgs/msg/Image', '/camera/wrist/image_raw': 'sensor_msgs/msg/Image',
             '/joint_states': 'sensor_msgs/msg/JointState', '/forward_position_controller/commands':
             'std_msgs/msg/Float64MultiArray', '/subtask': 'pi07_msgs/msg/Subtask', '/task': 'pi07_msgs/msg/Task',
             '/episode_metadata': 'pi07_msgs/msg/EpisodeMetadata', '/task_status': 'pi07_msgs/msg/TaskStatus'}
    with open(path, 'wb') as f:
        w = Writer(f)
        w.start(profile='ros2', library='pi07 test')
        channels = {}
        for topic, msgtype in types.items():
            if topic in skip_topics:
                continue
            sid = w.register_schema(name=msgtype, encoding='ros2msg', data=b'')
            channels[topic] = w.register_channel(topic=topic, message_encoding='cdr', schema_id=sid)
        events = []

        def add(topic, msg, t_s):
            if topic in channels:
                events.append((int(round(t_s * 1e9)), topic, serialize_message(msg)))

        meta = EpisodeMetadata(speed=3, quality=4, mistake=0, control_mode='joint', embodiment='testbot')
        add('/task', Task(task_id=f'test/{seed}', instruction=INSTRUCTION, metadata=meta, plan=PLAN), 0.0)
        add('/episode_metadata', meta, 0.0)
        for k in range(steps * 5 + 1):
            t = k * 0.02
            add('/joint_states', _stamp(JointState(name=JOINTS, position=joint_state_at(t, seed).tolist()),
                                        BASE_NS + int(t * 1e9)), t)
        for step in range(steps):
            t = step * 0.1
            for cam in ('scene', 'wrist'):
                img = np.full((IMAGE, IMAGE, 3), step * 4 % 256, np.uint8)
                img[0, 0] = (seed, 1 if cam == 'wrist' else 0, 7)
                add(f'/camera/{cam}/image_raw', _stamp(Image(height=IMAGE, width=IMAGE, encoding='rgb8',
                                                             step=IMAGE * 3, data=img.tobytes()),
                                                       BASE_NS + int(t * 1e9)), t)
            add('/forward_position_controller/commands',
                Float64MultiArray(data=expected_action(step, steps, seed).astype(float).tolist()), t)
            if step in (0, steps // 2):
                add('/subtask', Subtask(task_id=f'test/{seed}', text=PLAN[0 if step == 0 else 1],
                                        index=0 if step == 0 else 1, source='expert'), t)
            done = 0 if step < steps // 2 else (1 if step < steps - 3 else 2)
            add('/task_status', TaskStatus(state=1, subtasks_done=done, subtasks_total=2), t)
        add('/subtask', Subtask(task_id=f'test/{seed}', text='', index=2, task_done=True), steps * 0.1)
        for ns, topic, data in sorted(events, key=lambda e: e[0]):
            w.add_message(channel_id=channels[topic], log_time=BASE_NS + ns, data=data, publish_time=BASE_NS + ns)
        w.finish()
    if truncate:
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    return directory
