#!/usr/bin/env bash
# Open the AURA-Mem monitoring windows on a real ROS 2 install (rqt_plot, rqt_robot_monitor,
# diagnostic_aggregator installed; the workspace with aura_mem_ros sourced).
# Usage: config/rqt/aura_mem_monitor.sh [NODE]   (NODE defaults to /aura_mem)
set -euo pipefail
node="${1:-/aura_mem}"
share="$(ros2 pkg prefix aura_mem_ros)/share/aura_mem_ros/config"
pids=()
ros2 run diagnostic_aggregator aggregator_node --ros-args \
  --params-file "${share}/diagnostic_aggregator.yaml" & pids+=($!)
ros2 run rqt_robot_monitor rqt_robot_monitor & pids+=($!)
ros2 run rqt_plot rqt_plot "${node}/write_rate/data" "${node}/stats/write_rate" & pids+=($!)
ros2 run rqt_plot rqt_plot "${node}/writes_total/data" "${node}/steps_total/data" & pids+=($!)
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT INT TERM
wait
