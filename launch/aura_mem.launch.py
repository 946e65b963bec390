"""Start the aura_mem node (for full ROS 2 installs with launch_ros).

    ros2 launch aura_mem_ros aura_mem.launch.py
    ros2 launch aura_mem_ros aura_mem.launch.py namespace:=robot1 \
        image_topic:=/camera/color/image_raw proprio_topic:=/joint_states \
        params_file:=/path/to/my.yaml

Every input is remapped by one argument (``aura_mem_ros/ros/topics.py`` is the table the
node, this file and ``aura-mem-record`` share); an image argument also remaps its
``/compressed`` variant. The defaults are the node's own relative names, so in the root
namespace the node uses exactly what ``aura-mem-record`` records by default; for a namespace,
record with ``aura-mem-record --namespace <ns>`` (or ``--follow-node /<ns>/aura_mem`` for any
remap). The node walks itself to 'active' (autostart: true in the YAML).

Large camera frames (640x480 and up) need the shipped Fast DDS profile in the environment of
BOTH the camera driver and this launch: FASTDDS_DEFAULT_PROFILES_FILE=
$(ros2 pkg prefix aura_mem_ros)/share/aura_mem_ros/config/fastdds_large_data.xml
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from aura_mem_ros.ros import topics


def generate_launch_description() -> LaunchDescription:
    default_params = os.path.join(
        get_package_share_directory("aura_mem_ros"), "config", "aura_mem.yaml"
    )
    arguments = [
        DeclareLaunchArgument(
            "namespace", default_value="", description="namespace of the node and its inputs"
        ),
        DeclareLaunchArgument(
            "params_file", default_value=default_params, description="parameter YAML"
        ),
    ]
    remappings = []
    for entry in topics.INPUTS:
        arguments.append(
            DeclareLaunchArgument(
                entry.launch_argument,
                default_value=entry.name,
                description=f"{entry.description}; relative names resolve in the namespace",
            )
        )
        target = LaunchConfiguration(entry.launch_argument)
        remappings.append((entry.name, target))
        if entry.image:
            suffix = topics.COMPRESSED_SUFFIX
            remappings.append((entry.name + suffix, [target, suffix]))
    node = Node(
        package="aura_mem_ros",
        executable="aura_mem_node",
        name=topics.NODE_NAME,
        namespace=LaunchConfiguration("namespace"),
        output="screen",
        parameters=[LaunchConfiguration("params_file")],
        remappings=remappings,
    )
    return LaunchDescription([*arguments, node])
