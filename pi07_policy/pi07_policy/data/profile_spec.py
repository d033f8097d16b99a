"""The part of a robot profile (pi07_bringup/config/<name>.yaml) that data conversion and training need.

pi07_policy cannot import pi07_bringup (dependencies point the other way), so this reads the YAML itself: only
the fields below, with the same meaning as in the profile. `--profile sim_arm7` finds the file by name in the
installed pi07_bringup share directory or in the source tree; a path works too.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[3]


@dataclass(frozen=True)
class ProfileSpec:
    name: str
    embodiment: str
    camera_names: tuple[str, ...]          # in the profile's order: the models' camera slots
    camera_topics: tuple[str, ...]
    image_size: int
    state_names: tuple[str, ...]           # joint_states names forming the state vector
    action_names: tuple[str, ...]
    action_state_names: tuple[str, ...]    # joint_states names giving each action dimension's value
    control_mode: str                      # 'joint' or 'ee'
    control_rate_hz: float
    controller_interface: str              # forward_position | joint_trajectory | ee_target
    controller_topic: str
    position_min: tuple[float, ...]
    position_max: tuple[float, ...]
    path: str

    @property
    def state_dim(self) -> int:
        return len(self.state_names)

    @property
    def action_dim(self) -> int:
        return len(self.action_names)


def find_profile(name_or_path: str | Path) -> Path:
    """A profile file from a path, or a name looked up in pi07_bringup's config directories."""
    p = Path(name_or_path)
    if p.suffix in ('.yaml', '.yml') and p.is_file():
        return p
    name = p.stem if p.suffix else p.name
    candidates = [Path(prefix) / 'share' / 'pi07_bringup' / 'config' / f'{name}.yaml'
                  for prefix in os.environ.get('AMENT_PREFIX_PATH', '').split(os.pathsep) if prefix]
    candidates.append(REPO_ROOT / 'pi07_bringup' / 'config' / f'{name}.yaml')
    for c in candidates:
        if c.is_file():
            return c
    raise FileNotFoundError(f'profile {name_or_path!r} not found (looked in {[str(c) for c in candidates]})')


def load_profile_spec(name_or_path: str | Path) -> ProfileSpec:
    path = find_profile(name_or_path)
    raw = yaml.safe_load(path.read_text())

    def need(d: dict, key: str, where: str):
        if key not in d:
            raise ValueError(f'{path}: missing {where}{key}')
        return d[key]

    cameras = need(raw, 'cameras', '')
    action = need(raw, 'action', '')
    state_names = tuple(need(need(raw, 'state', ''), 'joint_names', 'state.'))
    action_names = tuple(need(action, 'names', 'action.'))
    controller = raw.get('controller', {})
    return ProfileSpec(
        name=str(raw.get('name', path.stem)), embodiment=str(need(raw, 'embodiment', '')),
        camera_names=tuple(cameras), camera_topics=tuple(str(v['topic']) for v in cameras.values()),
        image_size=int(raw.get('image_size', 96)), state_names=state_names, action_names=action_names,
        action_state_names=tuple(action.get('state_names', action_names)),
        control_mode=str(action.get('control_mode', 'joint')), control_rate_hz=float(raw.get('control_rate_hz', 10)),
        controller_interface=str(controller.get('interface', 'forward_position')),
        controller_topic=str(controller.get('topic', 'forward_position_controller/commands')),
        position_min=tuple(float(v) for v in action.get('position_min', [])),
        position_max=tuple(float(v) for v in action.get('position_max', [])), path=str(path))
