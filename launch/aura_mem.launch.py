"""Start the aura_mem node with config/aura_mem.yaml (for full ROS 2 installs with launch_ros).

    ros2 launch aura_mem_ros aura_mem.launch.py params_file:=/path/to/my.yaml

The node walks itself to 'active' (autostart: true in the YAML). Remap the inputs to your
camera and instruction topics below or with launch arguments of your own.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def generate_launch_description() -> LaunchDescription:
    default_params = os.path.join(
        get_package_share_directory("aura_mem_ros"), "config", "aura_mem.yaml"
    )
    return LaunchDescription(
        [
            DeclareLaunchArgument("params_file", default_value=default_params),
            DeclareLaunchArgument("image_topic", default_value="/camera/image_raw"),
            DeclareLaunchArgument("instruction_topic", default_value="/instruction"),
            Node(
                package="aura_mem_ros",
                executable="aura_mem_node",
                name="aura_mem",
                output="screen",
                parameters=[LaunchConfiguration("params_file")],
                remappings=[
                    ("image", LaunchConfiguration("image_topic")),
                    ("instruction", LaunchConfiguration("instruction_topic")),
                ],
            ),
        ]
    )
