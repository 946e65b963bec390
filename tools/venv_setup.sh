# shellcheck shell=sh
# `source .venv/setup.sh` (written by `make setup` from tools/venv_setup.sh): a shell in which
# every installed tool works - aura_mem_node, minigrid_sim, aura-mem-record, aura-mem-eval,
# aura-mem-train and the development command aura-mem-bench. .venv is the ROS 2 prefix (the
# ros-* wheels install share/ and lib/ into it), so this is its setup file: the venv's
# python and scripts first on PATH, and the variables the Makefile exports for every target.
. "@VENV@/bin/activate"
export AMENT_PREFIX_PATH="@VENV@"
export CMAKE_PREFIX_PATH="@VENV@"
export RMW_IMPLEMENTATION=rmw_fastrtps_cpp
