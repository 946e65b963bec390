"""Recording, reading and recovering ROS 2 bags of the AURA-Mem node's topics."""
