"""Profiles → node graph, without DDS: the logic the launch files and the runner share."""
import sys
import types
from pathlib import Path

import pytest
import yaml

from pi07_bringup.graph import build_graph, params_file_content
from pi07_bringup.profile import ProfileError, config_dir, load_profile

PROFILES = sorted(p.stem for p in config_dir().glob('*.yaml'))


def test_packaged_profiles_exist():
    assert {'sim_arm7', 'sim_gantry', 'ur5e_two_cams'} <= set(PROFILES)


@pytest.mark.parametrize('name', PROFILES)
def test_profile_loads_and_is_consistent(name):
    profile = load_profile(name)
    assert profile.action_dim == len(profile.position_min) == len(profile.velocity_max)
    assert profile.camera_names and profile.control_rate_hz > 0
    specs = build_graph(profile)
    assert [s.name for s in specs] == profile.enabled_nodes()
    assert specs[-1].name == 'chunk_executor'  # it starts commanding last
    executor = specs[-1].parameters
    assert executor['joint_names'] == list(profile.action_names)
    assert executor['interface'] == profile.controller_interface
    for spec in specs:
        assert spec.parameters['use_sim_time'] is False
        if 'cameras' in spec.parameters:
            assert spec.parameters['cameras'] == profile.camera_names


def test_swapping_profile_swaps_embodiment_without_code_change():
    arm, gantry = (build_graph(load_profile(n)) for n in ('sim_arm7', 'sim_gantry'))
    by_name = lambda specs: {s.name: s.parameters for s in specs}
    arm, gantry = by_name(arm), by_name(gantry)
    assert arm['sim']['embodiment'] == 'arm7' and gantry['sim']['embodiment'] == 'gantry'
    assert arm['chunk_executor']['interface'] == 'forward_position'
    assert gantry['chunk_executor']['interface'] == 'ee_target'
    assert len(arm['chunk_executor']['joint_names']) == 8 and len(gantry['chunk_executor']['joint_names']) == 5
    assert gantry['chunk_executor']['state_names'][0] == 'gantry_x'
    assert arm['action_expert']['checkpoint'].endswith('sim_arm7/vla')
    assert gantry['action_expert']['control_mode'] == 'ee'


def test_real_robot_profile_remaps_cameras_and_skips_sim():
    profile = load_profile('ur5e_two_cams')
    specs = {s.name: s for s in build_graph(profile)}
    assert 'sim' not in specs and 'world_model' not in specs
    remaps = dict(specs['action_expert'].remappings)
    assert remaps['camera/front/image_raw'] == '/camera/front/color/image_raw'
    assert specs['chunk_executor'].parameters['interface'] == 'joint_trajectory'
    assert specs['action_expert'].parameters['resize_images'] is True


def test_overrides_nodes_checkpoints_and_parameters(tmp_path):
    profile = load_profile('sim_arm7', checkpoint_dir=str(tmp_path))
    assert profile.checkpoints['action_expert'] == str((tmp_path / '../checkpoints/sim_arm7/vla').resolve())
    specs = build_graph(profile, nodes=['action_expert', 'chunk_executor'], use_sim_time=True,
                        checkpoints={'action_expert': '/ckpt'},
                        parameter_overrides={'action_expert': {'mode': 'sync'}})
    assert [s.name for s in specs] == ['action_expert', 'chunk_executor']
    assert specs[0].parameters['checkpoint'] == '/ckpt' and specs[0].parameters['mode'] == 'sync'
    assert all(s.parameters['use_sim_time'] for s in specs)
    args = specs[0].ros_arguments('robot1', '/tmp/p.yaml')
    assert args[:3] == ['--ros-args', '-r', '__node:=action_expert'] and '__ns:=/robot1' in args
    assert params_file_content(specs[0])['/**']['ros__parameters']['mode'] == 'sync'
    with pytest.raises(ProfileError, match='unknown node'):
        build_graph(profile, nodes=['planner'])


@pytest.mark.parametrize('mutate, message', [
    (lambda p: p['action'].update(position_min=[0.0]), 'position_min has 1 values'),
    (lambda p: p['action'].update(control_mode='torque'), 'control_mode'),
    (lambda p: p['controller'].update(interface='effort'), 'controller.interface'),
    (lambda p: p.pop('cameras'), 'missing "cameras"'),
    (lambda p: p['nodes'].update(planner={}), 'unknown node'),
    (lambda p: p['action'].update(velocity_max=[0.0] * 8), 'velocity_max must be > 0'),
])
def test_bad_profiles_are_refused_with_a_reason(tmp_path, mutate, message):
    raw = yaml.safe_load((config_dir() / 'sim_arm7.yaml').read_text())
    mutate(raw)
    path = tmp_path / 'bad.yaml'
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ProfileError, match=message):
        load_profile(str(path))


def test_unknown_profile_name_lists_the_known_ones():
    with pytest.raises(ProfileError, match='sim_arm7'):
        load_profile('no_such_robot')


def _fake_launch_modules(monkeypatch):
    """Minimal stand-ins for launch / launch_ros (not installable here) that record what the file builds."""
    created = []

    def recorder(kind):
        class Action:
            def __init__(self, *args, **kwargs):
                self.kind, self.args, self.kwargs = kind, args, kwargs
                created.append(self)
        return Action

    class LaunchConfiguration:
        values = {}

        def __init__(self, name):
            self.name = name

        def perform(self, context):
            return context[self.name]

    modules = {
        'launch': dict(LaunchDescription=recorder('LaunchDescription')),
        'launch.actions': {n: recorder(n) for n in ('DeclareLaunchArgument', 'EmitEvent', 'OpaqueFunction',
                                                    'RegisterEventHandler', 'IncludeLaunchDescription')},
        'launch.events': dict(matches_action=lambda action: action),
        'launch.substitutions': dict(LaunchConfiguration=LaunchConfiguration),
        'launch_ros': {},
        'launch_ros.actions': dict(LifecycleNode=recorder('LifecycleNode'), Node=recorder('Node')),
        'launch_ros.event_handlers': dict(OnStateTransition=recorder('OnStateTransition')),
        'launch_ros.events': {},
        'launch_ros.events.lifecycle': dict(ChangeState=recorder('ChangeState')),
    }
    for name, attrs in modules.items():
        module = types.ModuleType(name)
        module.__dict__.update(attrs)
        monkeypatch.setitem(sys.modules, name, module)
    return created


def test_launch_file_builds_the_graph_from_the_profile(monkeypatch):
    created = _fake_launch_modules(monkeypatch)
    source = Path(__file__).resolve().parents[1] / 'launch' / 'pi07.launch.py'
    namespace = {}
    exec(compile(source.read_text(), str(source), 'exec'), namespace)
    description = namespace['generate_launch_description']()
    declared = {a.args[0] for a in created if a.kind == 'DeclareLaunchArgument'}
    assert {'profile', 'namespace', 'nodes', 'checkpoint_dir', 'use_sim_time', 'autostart'} <= declared
    assert description.kind == 'LaunchDescription'
    context = dict(profile='sim_gantry', namespace='robot1', nodes='', checkpoint_dir='', checkpoint='/ck',
                   use_sim_time='true', autostart='true', with_sim='false')
    actions = namespace['_launch_setup'](context)
    nodes = [a for a in actions if getattr(a, 'kind', '') in ('LifecycleNode', 'Node')]
    assert [n.kwargs['name'] for n in nodes] == ['memory', 'high_level_policy', 'world_model', 'action_expert',
                                                'chunk_executor']
    assert all(n.kind == 'LifecycleNode' and n.kwargs['namespace'] == 'robot1' for n in nodes)
    expert = next(n for n in nodes if n.kwargs['name'] == 'action_expert')
    assert expert.kwargs['parameters'][0]['checkpoint'] == '/ck'
    assert expert.kwargs['parameters'][0]['use_sim_time'] is True
    # one configure event and one activate handler per lifecycle node
    assert sum(1 for a in actions if getattr(a, 'kind', '') == 'EmitEvent') == len(nodes)
    assert sum(1 for a in actions if getattr(a, 'kind', '') == 'RegisterEventHandler') == len(nodes)


def test_params_file_quotes_strings_that_yaml_1_1_reads_as_booleans():
    from pi07_bringup.graph import params_file_text

    spec = build_graph(load_profile('sim_gantry'), nodes=['chunk_executor'])[0]
    text = params_file_text(spec)
    assert "- 'y'" in text and "- 'yaw'" in text
    assert yaml.safe_load(text)['/**']['ros__parameters']['joint_names'] == ['x', 'y', 'z', 'yaw', 'gripper']


def test_memory_keeps_the_first_frame_for_a_keyframe_vla(tmp_path):
    """A VLA trained with memory keyframes (or a world model that reads them) gets a memory node that keeps them,
    unless the profile or an override says otherwise; other VLAs leave the memory node's default."""
    import json
    profile = load_profile('sim_gantry')
    (tmp_path / 'config.json').write_text(json.dumps({'config': {'memory_keeps_first_frame': True}}))

    def keep_first(**kwargs):
        return {s.name: s for s in build_graph(profile, **kwargs)}['memory'].parameters.get('keep_first_frame')

    assert keep_first(checkpoints={'action_expert': str(tmp_path)}) is True
    assert keep_first(checkpoints={'action_expert': str(tmp_path)},
                      parameter_overrides={'memory': {'keep_first_frame': False}}) is False
    assert keep_first(checkpoints={'action_expert': str(tmp_path / 'missing')}) is None
    # a world model that reads keyframes needs them as much
    (tmp_path / 'wm').mkdir()
    (tmp_path / 'wm' / 'config.json').write_text(json.dumps({'config': {'reads_keyframe': True}}))
    assert keep_first(checkpoints={'action_expert': str(tmp_path / 'missing'), 'world_model': str(tmp_path / 'wm')}) \
        is True


def test_the_action_expert_watches_the_executors_gripper(tmp_path):
    """The gripper whose switches the action expert may confirm is the executor's, closed above the middle of its
    range in the profile; a profile whose executor names no gripper leaves it unset."""
    import copy
    specs = {s.name: s for s in build_graph(load_profile('sim_arm7'), nodes=['action_expert', 'chunk_executor'])}
    expert = specs['action_expert'].parameters
    assert expert['gripper_name'] == specs['chunk_executor'].parameters['gripper_name'] == 'gripper'
    assert expert['gripper_threshold'] == pytest.approx(0.5)   # range 0 .. 1
    data = yaml.safe_load((config_dir() / 'sim_arm7.yaml').read_text())
    data['action']['position_max'][-1] = 0.08   # a gripper opening in metres
    (tmp_path / 'p.yaml').write_text(yaml.safe_dump(data))
    expert = build_graph(load_profile(str(tmp_path / 'p.yaml')), nodes=['action_expert'])[0].parameters
    assert expert['gripper_threshold'] == pytest.approx(0.04)
    data = copy.deepcopy(data)
    data['nodes']['chunk_executor']['parameters'].pop('gripper_name')
    data['nodes']['chunk_executor']['parameters'].pop('gripper_min_dwell_s')
    (tmp_path / 'q.yaml').write_text(yaml.safe_dump(data))
    expert = build_graph(load_profile(str(tmp_path / 'q.yaml')), nodes=['action_expert'])[0].parameters
    assert expert['gripper_name'] == '' and 'gripper_threshold' not in expert
