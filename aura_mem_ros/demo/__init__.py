"""``python -m aura_mem_ros.demo``: the simulator and the aura_mem node as two ROS processes."""
