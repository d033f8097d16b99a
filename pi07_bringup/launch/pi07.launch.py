"""Launch the pi07 stack from an embodiment profile (full ROS 2 install: launch + launch_ros).

    ros2 launch pi07_bringup pi07.launch.py profile:=sim_arm7
    ros2 launch pi07_bringup pi07.launch.py profile:=/path/my_robot.yaml namespace:=robot1 \
        nodes:=memory,action_expert,chunk_executor checkpoint_dir:=/models use_sim_time:=true

Which nodes start, and with which parameters and remappings, is decided by pi07_bringup.graph from the profile:
the embedded runner (`ros2 run pi07_bringup run`) uses the same code. Lifecycle nodes are configured and then
activated automatically (autostart:=false leaves them unconfigured).
"""
import lifecycle_msgs.msg
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, EmitEvent, OpaqueFunction, RegisterEventHandler
from launch.events import matches_action
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode, Node
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState

from pi07_bringup.graph import build_graph
from pi07_bringup.profile import load_profile

ARGUMENTS = {
    'profile': ('sim_arm7', 'Profile name (pi07_bringup/config) or path to a profile YAML.'),
    'namespace': ('', 'Namespace of every node (one per robot).'),
    'nodes': ('', 'Comma-separated nodes to start instead of the profile\'s (e.g. memory,action_expert).'),
    'checkpoint_dir': ('', 'Base directory for the profile\'s relative checkpoint paths.'),
    'checkpoint': ('', 'Checkpoint of the action expert (overrides the profile).'),
    'use_sim_time': ('false', 'Follow /clock (simulation, bag replay).'),
    'autostart': ('true', 'Configure and activate lifecycle nodes automatically.'),
    'with_sim': ('', 'true/false: start the embedded sim regardless of the profile ("" = as the profile says).'),
}


def _truthy(value: str) -> bool:
    return value.strip().lower() in ('1', 'true', 'yes', 'on')


def _lifecycle_autostart(node):
    """configure on start; activate once inactive."""
    configure = EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node),
                                            transition_id=lifecycle_msgs.msg.Transition.TRANSITION_CONFIGURE))
    activate = RegisterEventHandler(OnStateTransition(
        target_lifecycle_node=node, goal_state='inactive',
        entities=[EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node),
                                              transition_id=lifecycle_msgs.msg.Transition.TRANSITION_ACTIVATE))]))
    return [activate, configure]


def _launch_setup(context, *args, **kwargs):
    value = {name: LaunchConfiguration(name).perform(context) for name in ARGUMENTS}
    profile = load_profile(value['profile'], value['checkpoint_dir'] or None)
    selected = [n for n in value['nodes'].split(',') if n] or profile.enabled_nodes()
    if value['with_sim']:
        selected = [n for n in selected if n != 'sim'] + (['sim'] if _truthy(value['with_sim']) else [])
    checkpoints = {'action_expert': value['checkpoint']} if value['checkpoint'] else None
    specs = build_graph(profile, nodes=selected, use_sim_time=_truthy(value['use_sim_time']),
                        checkpoints=checkpoints)
    namespace = value['namespace']
    actions = []
    for spec in specs:
        common = dict(package=spec.package, executable=spec.executable, name=spec.name, namespace=namespace,
                      parameters=[spec.parameters], remappings=list(spec.remappings), output='screen')
        if spec.lifecycle:
            node = LifecycleNode(**common)
            actions.append(node)
            if _truthy(value['autostart']):
                actions += _lifecycle_autostart(node)
        else:
            actions.append(Node(**common))
    return actions


def generate_launch_description():
    return LaunchDescription(
        [DeclareLaunchArgument(name, default_value=default, description=description)
         for name, (default, description) in ARGUMENTS.items()]
        + [OpaqueFunction(function=_launch_setup)])
