"""The embedded simulated robot (pi07_sim) plus the pi07 stack, from a sim profile.

    ros2 launch pi07_bringup sim.launch.py                       # sim_arm7
    ros2 launch pi07_bringup sim.launch.py profile:=sim_gantry
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration


def generate_launch_description():
    stack = os.path.join(get_package_share_directory('pi07_bringup'), 'launch', 'pi07.launch.py')
    names = ('profile', 'namespace', 'nodes', 'checkpoint_dir', 'checkpoint', 'use_sim_time', 'autostart')
    defaults = {'profile': 'sim_arm7', 'use_sim_time': 'false', 'autostart': 'true'}
    return LaunchDescription(
        [DeclareLaunchArgument(n, default_value=defaults.get(n, '')) for n in names]
        + [IncludeLaunchDescription(
            PythonLaunchDescriptionSource(stack),
            launch_arguments=dict({n: LaunchConfiguration(n) for n in names}, with_sim='true').items())])
