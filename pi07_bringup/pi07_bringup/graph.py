"""From a profile to the nodes to start: the one place both the launch files and the embedded runner use.

``build_graph(profile)`` returns NodeSpecs (package, executable, name, parameters, remappings, lifecycle) in
bring-up order; launch files turn them into launch_ros actions, the runner into processes.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pi07_bringup.profile import NODE_NAMES, Profile, ProfileError

# node name -> (package, executable, is a lifecycle node)
NODE_TYPES: dict[str, tuple[str, str, bool]] = {
    'sim': ('pi07_sim', 'sim', True),
    'memory': ('pi07_memory', 'memory', True),
    'high_level_policy': ('pi07_policy', 'high_level_policy', True),
    'world_model': ('pi07_world_model', 'world_model', True),
    'action_expert': ('pi07_policy', 'action_expert', True),
    'chunk_executor': ('pi07_policy', 'chunk_executor', True),
}


@dataclass(frozen=True)
class NodeSpec:
    name: str
    package: str
    executable: str
    lifecycle: bool
    parameters: dict[str, Any] = field(default_factory=dict)
    remappings: tuple[tuple[str, str], ...] = ()

    def ros_arguments(self, namespace: str = '', params_file: str | None = None) -> list[str]:
        """Command-line ROS arguments for this node (for processes started without launch)."""
        args = ['--ros-args', '-r', f'__node:={self.name}']
        if namespace:
            args += ['-r', f'__ns:={namespace if namespace.startswith("/") else "/" + namespace}']
        if params_file:
            args += ['--params-file', params_file]
        for src, dst in self.remappings:
            args += ['-r', f'{src}:={dst}']
        return args


def _node_parameters(profile: Profile, node: str) -> dict[str, Any]:
    cameras = {'cameras': profile.camera_names, 'image_size': profile.image_size,
               'resize_images': profile.resize_images}
    checkpoint = profile.checkpoints.get(node, '')
    if node == 'sim':
        return {'image_size': profile.image_size}
    if node == 'memory':
        return dict(cameras)
    if node in ('high_level_policy', 'world_model'):
        return dict(cameras, checkpoint=checkpoint, embodiment=profile.embodiment)
    if node == 'action_expert':
        # the gripper the executor dwells on is the one whose switches the expert may confirm; closed above the
        # middle of its range, as the executor reads it
        executor = profile.nodes.get('chunk_executor')
        gripper = str(executor.parameters.get('gripper_name', '')) if executor is not None else ''
        params = dict(cameras, checkpoint=checkpoint, embodiment=profile.embodiment,
                      joint_names=list(profile.state_joint_names), action_names=list(profile.action_names),
                      control_mode=profile.control_mode, control_rate_hz=profile.control_rate_hz,
                      gripper_name=gripper)
        if gripper in profile.action_names:
            i = profile.action_names.index(gripper)
            params['gripper_threshold'] = 0.5 * float(profile.position_min[i] + profile.position_max[i])
        return params
    if node == 'chunk_executor':
        return {'control_rate_hz': profile.control_rate_hz, 'interface': profile.controller_interface,
                'command_topic': profile.controller_topic, 'joint_names': list(profile.action_names),
                'state_names': list(profile.action_state_names),
                'position_min': list(profile.position_min), 'position_max': list(profile.position_max),
                'velocity_max': list(profile.velocity_max)}
    raise ProfileError(f'unknown node {node!r}')


def build_graph(profile: Profile, *, nodes: list[str] | None = None, use_sim_time: bool = False,
                checkpoints: dict[str, str] | None = None,
                parameter_overrides: dict[str, dict[str, Any]] | None = None) -> list[NodeSpec]:
    """The nodes to start for ``profile``, in bring-up order (the executor last, so it starts commanding last).

    ``nodes``: start exactly these instead of the profile's enabled nodes. ``checkpoints``: per-node checkpoint
    paths that replace the profile's. ``parameter_overrides``: per-node parameters applied last.
    """
    selected = list(nodes) if nodes is not None else profile.enabled_nodes()
    unknown = [n for n in selected if n not in NODE_TYPES]
    if unknown:
        raise ProfileError(f'unknown node(s) {unknown}; known: {", ".join(NODE_NAMES)}')
    camera_remaps = tuple((f'camera/{c.name}/image_raw', c.topic) for c in profile.cameras
                          if c.topic != f'camera/{c.name}/image_raw')
    specs = []
    for node in NODE_NAMES:
        if node not in selected:
            continue
        package, executable, lifecycle = NODE_TYPES[node]
        params = _node_parameters(profile, node)
        entry = profile.nodes.get(node)
        if entry is not None:
            params.update(entry.parameters)
        if checkpoints and checkpoints.get(node):
            params['checkpoint'] = checkpoints[node]
        params.update((parameter_overrides or {}).get(node, {}))
        params['use_sim_time'] = use_sim_time
        remaps = () if node == 'sim' else camera_remaps
        specs.append(NodeSpec(node, package, executable, lifecycle, params, remaps))
    _match_memory_layout(specs, profile, parameter_overrides or {})
    return specs


def _match_memory_layout(specs: list[NodeSpec], profile: Profile, overrides: dict[str, dict[str, Any]]) -> None:
    """A VLA trained with memory keyframes (`memory_keeps_first_frame` in its config), or a world model that reads
    them (`reads_keyframe`), needs the memory node to keep the first frame: set `keep_first_frame` from their
    checkpoints unless the profile or an override sets it."""
    by_name = {s.name: s for s in specs}
    memory = by_name.get('memory')
    entry = profile.nodes.get('memory')
    if memory is None or 'keep_first_frame' in overrides.get('memory', {}) or (
            entry is not None and 'keep_first_frame' in entry.parameters):
        return
    for node, key in (('action_expert', 'memory_keeps_first_frame'), ('world_model', 'reads_keyframe')):
        spec = by_name.get(node)
        if spec is None:
            continue
        try:
            config = json.loads((Path(str(spec.parameters.get('checkpoint', ''))) / 'config.json').read_text())
        except (OSError, ValueError):
            continue   # no readable checkpoint here: the node reports it when it configures
        if isinstance(config, dict) and (config.get('config') or {}).get(key):
            memory.parameters['keep_first_frame'] = True


def params_file_content(spec: NodeSpec) -> dict:
    """The ROS 2 parameters-file structure for one node (the file is given to that node alone)."""
    return {'/**': {'ros__parameters': spec.parameters}}


class _QuotedStrings(yaml.SafeDumper):
    pass


# rcl reads parameter files as YAML 1.1, where y, n, on, off ... are booleans: quote every string value.
_QuotedStrings.add_representer(str, lambda dumper, value: dumper.represent_scalar('tag:yaml.org,2002:str', value,
                                                                                 style="'"))


def params_file_text(spec: NodeSpec) -> str:
    """The parameters file for one node, safe for rcl's YAML reader."""
    return yaml.dump(params_file_content(spec), Dumper=_QuotedStrings, sort_keys=False)
