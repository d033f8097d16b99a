"""One recorded episode (a rosbag2 MCAP bag) -> arrays on the control-rate grid.

Streams are aligned by receive time (the bag's log time), so live recordings work as well as `collect`'s:

- the grid: the first camera's frames, thinned to the control rate (a frame every 1 / rate s, 10 % slack);
  each step needs a frame of every camera within half a period, else the step is dropped
- state at t: the newest joint_states at or before t (+1 ms), in the profile's joint order
- action at t: the first command at or after t - 1 ms (the command chosen after seeing the frame at t); the
  newest one before t when none follows within a period
- subtask at t: the newest `subtask` message at or before t (`task_done` ends it)
- task instruction, plan and episode metadata: `task` / `episode_metadata` (latched, once)

A bag that cannot give an episode raises `EpisodeError` with the reason (missing topic, truncated file, too few
steps, ...), which the converter reports and skips.
"""
from __future__ import annotations

import importlib
import json
import math
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from .profile_spec import ProfileSpec

SLACK_S = 1e-3


class EpisodeError(Exception):
    """This bag cannot become an episode; the message says why."""


@dataclass
class Episode:
    name: str
    time: np.ndarray                       # (T,) s since the first step
    images: dict[str, np.ndarray]          # camera -> (T, S, S, 3) uint8
    state: np.ndarray                      # (T, Ds) float32
    actions: np.ndarray                    # (T, Da) float32
    subtask_index: np.ndarray              # (T,) int16 into `subtasks`, -1 = none (before the first, after done)
    progress: np.ndarray | None = None     # (T,) int16 subtasks done in order (task_status), -1 = not recorded
    subtasks: list[str] = field(default_factory=list)   # texts of the episode's subtask segments, in order
    instruction: str = ''
    plan: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    outcome: dict[str, Any] = field(default_factory=dict)   # collect's custom_data (success, seed, ...), if any
    notes: list[str] = field(default_factory=list)          # what was missing but not fatal

    def __len__(self) -> int:
        return len(self.time)


def _message_class(schema_name: str):
    package, kind, name = schema_name.split('/')
    return getattr(importlib.import_module(f'{package}.{kind}'), name)


def _topic(name: str) -> str:
    return name if name.startswith('/') else '/' + name


def image_array(msg) -> np.ndarray:
    """sensor_msgs/Image (rgb8, bgr8, rgba8, bgra8) -> (H, W, 3) uint8 RGB."""
    channels = {'rgb8': 3, 'bgr8': 3, 'rgba8': 4, 'bgra8': 4}.get(msg.encoding)
    if channels is None:
        raise EpisodeError(f'image encoding {msg.encoding!r} is not supported (rgb8, bgr8, rgba8, bgra8)')
    raw = np.frombuffer(bytes(msg.data), np.uint8)
    if raw.size < msg.step * msg.height:
        raise EpisodeError(f'image data has {raw.size} bytes, expected {msg.step * msg.height}')
    img = raw[: msg.step * msg.height].reshape(msg.height, msg.step)[:, : msg.width * channels]
    img = img.reshape(msg.height, msg.width, channels)[..., :3]
    return np.ascontiguousarray(img[..., ::-1] if msg.encoding.startswith('bgr') else img)


def yaw_of(q) -> float:
    return math.atan2(2.0 * (q.w * q.z + q.x * q.y), 1.0 - 2.0 * (q.y * q.y + q.z * q.z))


def command_vector(msg, profile: ProfileSpec) -> np.ndarray | None:
    """A recorded command as the profile's action vector (robot units), or None if it does not give one."""
    kind = type(msg).__name__
    if kind == 'Float64MultiArray':
        if len(msg.data) != profile.action_dim:
            raise EpisodeError(f'command has {len(msg.data)} values, the profile {profile.action_dim}')
        return np.asarray(msg.data, np.float32)
    if kind == 'EndEffectorTarget':
        p = msg.pose.position
        return np.asarray([p.x, p.y, p.z, yaw_of(msg.pose.orientation), msg.gripper], np.float32)
    if kind == 'JointTrajectory':
        if not msg.points:
            return None
        values = dict(zip(msg.joint_names, msg.points[0].positions))
        if not all(n in values for n in profile.action_names):
            return None
        return np.asarray([values[n] for n in profile.action_names], np.float32)
    raise EpisodeError(f'command type {kind} is not supported')


def metadata_of(msg) -> dict[str, Any]:
    """EpisodeMetadata -> the policy's metadata dict (unspecified fields left out)."""
    out: dict[str, Any] = {}
    if msg.speed:
        out['speed'] = int(msg.speed)
    if msg.quality:
        out['quality'] = int(msg.quality)
    if msg.mistake in (0, 1):
        out['mistake'] = bool(msg.mistake)
    if msg.control_mode:
        out['control_mode'] = msg.control_mode
    return out


def find_mcap(bag: Path) -> Path:
    if bag.is_file():
        return bag
    files = sorted(bag.glob('*.mcap'))
    if not files:
        raise EpisodeError('no .mcap file in the bag directory')
    return files[0]


def read_custom_outcome(bag: Path) -> dict[str, Any]:
    meta = bag / 'metadata.yaml' if bag.is_dir() else bag.with_name('metadata.yaml')
    if not meta.is_file():
        return {}
    try:
        info = yaml.safe_load(meta.read_text())['rosbag2_bagfile_information']
        return json.loads((info.get('custom_data') or {}).get('pi07.episode', '{}'))
    except Exception:  # metadata is a convenience; the MCAP file is the record
        return {}


def _read_messages(path: Path, topics: set[str]) -> dict[str, list[tuple[float, Any]]]:
    """topic -> [(log time s, deserialised message)] for the wanted topics. Raises EpisodeError on a broken file."""
    from mcap.exceptions import McapError
    from mcap.reader import NonSeekingReader
    from rclpy.serialization import deserialize_message

    out: dict[str, list[tuple[float, Any]]] = {t: [] for t in topics}
    classes: dict[int, Any] = {}
    try:
        with open(path, 'rb') as f:
            # The streaming reader needs no summary section, so a bag whose recorder was killed still reads up to
            # where it stops; a file cut mid-record raises, which we report as truncated.
            for schema, channel, message in NonSeekingReader(f).iter_messages():
                if channel.topic not in topics:
                    continue
                if channel.id not in classes:
                    classes[channel.id] = _message_class(schema.name)
                out[channel.topic].append((message.log_time * 1e-9,
                                           deserialize_message(message.data, classes[channel.id])))
    except (McapError, EOFError, ValueError, struct.error) as exc:
        raise EpisodeError(f'truncated or corrupt MCAP file: {type(exc).__name__}: {exc}') from exc
    return out


def read_episode(bag: str | Path, profile: ProfileSpec, min_steps: int = 10) -> Episode:
    """Read one bag (directory or .mcap file) into an Episode on the control-rate grid (see module docstring)."""
    bag = Path(bag)
    path = find_mcap(bag)
    cam_topics = [_topic(t) for t in profile.camera_topics]
    cmd_topic, js_topic = _topic(profile.controller_topic), '/joint_states'
    wanted = {*cam_topics, cmd_topic, js_topic, '/task', '/subtask', '/episode_metadata', '/task_status'}
    msgs = _read_messages(path, wanted)
    for topic in (*cam_topics, js_topic, cmd_topic):
        if not msgs[topic]:
            raise EpisodeError(f'missing topic {topic} (no messages)')
    notes = [f'no {t} messages' for t in ('/task', '/subtask', '/episode_metadata', '/task_status') if not msgs[t]]

    # ---- the grid: frames of the first camera at the control rate, each with every camera's frame
    period = 1.0 / profile.control_rate_hz
    cam_times = {t: np.asarray([s for s, _ in msgs[t]]) for t in cam_topics}
    grid, frame_index = [], []
    last = -math.inf
    for s in cam_times[cam_topics[0]]:
        if s - last < 0.9 * period:
            continue
        idx = []
        for t in cam_topics:
            j = int(np.argmin(np.abs(cam_times[t] - s)))
            if abs(cam_times[t][j] - s) > 0.5 * period:
                break
            idx.append(j)
        else:
            grid.append(s)
            frame_index.append(idx)
            last = s
    if len(grid) < min_steps:
        raise EpisodeError(f'too short: {len(grid)} control steps (< {min_steps})')
    grid = np.asarray(grid)
    images = {}
    for c, (name, topic) in enumerate(zip(profile.camera_names, cam_topics)):
        frames = [image_array(msgs[topic][idx[c]][1]) for idx in frame_index]
        shapes = {f.shape for f in frames}
        if len(shapes) != 1:
            raise EpisodeError(f'camera {name} changes image size within the episode: {sorted(shapes)}')
        images[name] = np.stack(frames)

    # ---- state: newest joint_states at or before each step
    js_times = np.asarray([s for s, _ in msgs[js_topic]])
    first = msgs[js_topic][0][1]
    missing = [n for n in profile.state_names if n not in first.name]
    if missing:
        raise EpisodeError(f'joint_states lacks joints {missing}')
    order = [list(first.name).index(n) for n in profile.state_names]
    js_pos = np.asarray([[m.position[k] for k in order] for _, m in msgs[js_topic]], np.float32)
    js_idx = np.searchsorted(js_times, grid + SLACK_S, side='right') - 1
    # a frame just before the first joint state (recording starts with the cameras) takes that first state
    js_idx[(js_idx < 0) & (js_times[0] - grid < period)] = 0
    if js_idx[0] < 0:   # no joint state near the first frames: start where one exists
        keep = js_idx >= 0
        if keep.sum() < min_steps:
            raise EpisodeError('joint_states start after the cameras end')
        grid, js_idx = grid[keep], js_idx[keep]
        images = {k: v[keep] for k, v in images.items()}
    state = js_pos[js_idx]

    # ---- actions: first command at or after t (the one chosen after this frame), else the newest before
    cmds = [(s, command_vector(m, profile)) for s, m in msgs[cmd_topic]]
    cmds = [(s, v) for s, v in cmds if v is not None]
    if not cmds:
        raise EpisodeError(f'no usable command on {cmd_topic}')
    cmd_times = np.asarray([s for s, _ in cmds])
    cmd_vals = np.stack([v for _, v in cmds])
    after = np.searchsorted(cmd_times, grid - SLACK_S, side='left')
    before = np.searchsorted(cmd_times, grid + SLACK_S, side='right') - 1
    use_after = (after < len(cmd_times)) & (cmd_times[np.minimum(after, len(cmd_times) - 1)] - grid < period)
    act_idx = np.where(use_after, after, before)
    if (act_idx < 0).any():   # steps before the first command carry no action: drop them
        keep = act_idx >= 0
        if keep.sum() < min_steps:
            raise EpisodeError('too few steps with a command')
        grid, act_idx, state = grid[keep], act_idx[keep], state[keep]
        images = {k: v[keep] for k, v in images.items()}
    actions = cmd_vals[act_idx]
    if not (np.isfinite(actions).all() and np.isfinite(state).all()):
        raise EpisodeError('non-finite state or command values')

    # ---- subtasks: segments from the latched-on-change topic
    subtasks: list[str] = []
    sub_index = np.full(len(grid), -1, np.int16)
    events = []   # (time, segment index or -1)
    for s, m in msgs['/subtask']:
        if m.task_done or not m.text:
            events.append((s, -1))
        elif not subtasks or subtasks[-1] != m.text or events[-1][1] == -1:
            subtasks.append(m.text)
            events.append((s, len(subtasks) - 1))
    for s, k in events:
        sub_index[grid + SLACK_S >= s] = k

    progress = np.full(len(grid), -1, np.int16)
    for s, m in msgs['/task_status']:
        progress[grid + SLACK_S >= s] = int(m.subtasks_done)

    task = msgs['/task'][0][1] if msgs['/task'] else None
    meta_msg = msgs['/episode_metadata'][0][1] if msgs['/episode_metadata'] else (task.metadata if task else None)
    metadata = metadata_of(meta_msg) if meta_msg is not None else {}
    metadata.setdefault('control_mode', profile.control_mode)
    return Episode(name=bag.name if bag.is_dir() else bag.stem, time=(grid - grid[0]).astype(np.float64),
                   images=images, state=state.astype(np.float32), actions=actions.astype(np.float32),
                   subtask_index=sub_index, progress=progress, subtasks=subtasks,
                   instruction=task.instruction if task else '',
                   plan=list(task.plan) if task else [], metadata=metadata, outcome=read_custom_outcome(bag),
                   notes=notes)
