"""Embodiment profiles: one YAML file says everything that differs per robot (shared/DESIGN.md §5).

The same profile drives the launch files and the embedded runner (through pi07_bringup.graph), so swapping the
embodiment is swapping the file. Loading validates it and says what is wrong, with the file name.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

NODE_NAMES = ('sim', 'memory', 'high_level_policy', 'world_model', 'action_expert', 'chunk_executor')
CONTROL_MODES = ('joint', 'ee')
INTERFACES = ('joint_trajectory', 'forward_position', 'ee_target')


class ProfileError(ValueError):
    pass


@dataclass(frozen=True)
class Camera:
    name: str
    topic: str


@dataclass(frozen=True)
class NodeEntry:
    enabled: bool
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    embodiment: str
    cameras: tuple[Camera, ...]
    image_size: int
    resize_images: bool
    state_joint_names: tuple[str, ...]
    control_mode: str
    action_names: tuple[str, ...]
    action_state_names: tuple[str, ...]
    position_min: tuple[float, ...]
    position_max: tuple[float, ...]
    velocity_max: tuple[float, ...]
    control_rate_hz: float
    controller_interface: str
    controller_topic: str
    checkpoints: dict[str, str]
    nodes: dict[str, NodeEntry]
    source: str = ''

    @property
    def camera_names(self) -> list[str]:
        return [c.name for c in self.cameras]

    @property
    def action_dim(self) -> int:
        return len(self.action_names)

    def enabled_nodes(self) -> list[str]:
        return [n for n in NODE_NAMES if self.nodes.get(n, NodeEntry(False)).enabled]


def config_dir() -> Path:
    """Where the packaged profiles are: the installed share dir, or the source tree."""
    try:
        from ament_index_python.packages import get_package_share_directory

        path = Path(get_package_share_directory('pi07_bringup')) / 'config'
        if path.is_dir():
            return path
    except (ImportError, LookupError, ValueError):
        pass
    return Path(__file__).resolve().parents[1] / 'config'


def profile_path(name_or_path: str) -> Path:
    """A path as given, or the name of a packaged profile (``sim_arm7`` → config/sim_arm7.yaml)."""
    candidate = Path(name_or_path).expanduser()
    if candidate.suffix in ('.yaml', '.yml') or candidate.exists():
        return candidate
    path = config_dir() / f'{name_or_path}.yaml'
    if not path.exists():
        known = sorted(p.stem for p in config_dir().glob('*.yaml'))
        raise ProfileError(f'no profile {name_or_path!r}; packaged profiles: {", ".join(known)}')
    return path


def load_profile(name_or_path: str, checkpoint_dir: str | None = None) -> Profile:
    """Load and validate a profile. Relative checkpoint paths resolve against ``checkpoint_dir`` when given,
    else $PI07_CHECKPOINT_DIR, else the profile file's directory."""
    path = profile_path(name_or_path)
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ProfileError(f'{path}: cannot read profile: {exc}') from exc
    try:
        return _parse(raw, path, checkpoint_dir)
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, ProfileError):
            raise
        raise ProfileError(f'{path}: {type(exc).__name__}: {exc}') from exc


def _parse(raw: dict, path: Path, checkpoint_dir: str | None) -> Profile:
    def need(mapping, key, where):
        if not isinstance(mapping, dict) or key not in mapping:
            raise ProfileError(f'{path}: missing "{where}{key}"')
        return mapping[key]

    if not isinstance(raw, dict):
        raise ProfileError(f'{path}: a profile is a YAML mapping')
    cameras = tuple(Camera(name, (spec or {}).get('topic', f'camera/{name}/image_raw'))
                    for name, spec in need(raw, 'cameras', '').items())
    if not cameras:
        raise ProfileError(f'{path}: at least one camera is needed')
    action = need(raw, 'action', '')
    names = tuple(need(action, 'names', 'action.'))
    limits = {k: tuple(float(v) for v in need(action, k, 'action.')) for k in
              ('position_min', 'position_max', 'velocity_max')}
    for key, values in limits.items():
        if len(values) != len(names):
            raise ProfileError(f'{path}: action.{key} has {len(values)} values for {len(names)} action names')
    if any(lo > hi for lo, hi in zip(limits['position_min'], limits['position_max'])):
        raise ProfileError(f'{path}: action.position_min must be <= position_max')
    if any(v <= 0 for v in limits['velocity_max']):
        raise ProfileError(f'{path}: action.velocity_max must be > 0')
    state_names = tuple(action.get('state_names') or names)
    if len(state_names) != len(names):
        raise ProfileError(f'{path}: action.state_names has {len(state_names)} names for {len(names)} actions')
    mode = need(action, 'control_mode', 'action.')
    if mode not in CONTROL_MODES:
        raise ProfileError(f'{path}: action.control_mode {mode!r} is not one of {CONTROL_MODES}')
    controller = need(raw, 'controller', '')
    interface = need(controller, 'interface', 'controller.')
    if interface not in INTERFACES:
        raise ProfileError(f'{path}: controller.interface {interface!r} is not one of {INTERFACES}')
    base = Path(checkpoint_dir or os.environ.get('PI07_CHECKPOINT_DIR') or path.parent)
    checkpoints = {node: str((base / p).resolve()) if p and not Path(p).is_absolute() else str(p or '')
                   for node, p in (raw.get('checkpoints') or {}).items()}
    nodes = {}
    for node, spec in (raw.get('nodes') or {}).items():
        if node not in NODE_NAMES:
            raise ProfileError(f'{path}: unknown node {node!r} (known: {", ".join(NODE_NAMES)})')
        spec = spec or {}
        nodes[node] = NodeEntry(bool(spec.get('enabled', True)), dict(spec.get('parameters') or {}))
    return Profile(
        name=str(raw.get('name', path.stem)), description=str(raw.get('description', '')),
        embodiment=str(need(raw, 'embodiment', '')), cameras=cameras,
        image_size=int(raw.get('image_size', 96)), resize_images=bool(raw.get('resize_images', False)),
        state_joint_names=tuple(need(need(raw, 'state', ''), 'joint_names', 'state.')),
        control_mode=mode, action_names=names, action_state_names=state_names, **limits,
        control_rate_hz=float(need(raw, 'control_rate_hz', '')),
        controller_interface=interface,
        controller_topic=str(controller.get('topic', '')),
        checkpoints=checkpoints, nodes=nodes, source=str(path))
