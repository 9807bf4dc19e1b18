# Source this file (bash or zsh) to get the project's environment in a shell:
#   source scripts/env.sh
# It activates .venv (made by `make setup`) and points ROS 2 at the wheels and at this package's
# generated messages in install/.
_pr_root=$(cd "$(dirname "${BASH_SOURCE[0]:-${(%):-%x}}")/.." && pwd)
if [ ! -x "$_pr_root/.venv/bin/python" ]; then
  echo "panoptic_ros: no .venv yet; run 'make setup' in $_pr_root first" >&2
else
  . "$_pr_root/.venv/bin/activate"
  export PANOPTIC_ROS_ROOT="$_pr_root"
  export AMENT_PREFIX_PATH="$_pr_root/install:$_pr_root/.venv${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
  export LD_LIBRARY_PATH="$_pr_root/install/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  # The node executables, as `ros2 run panoptic_ros <exe>` would find them.
  export PATH="$_pr_root/install/lib/panoptic_ros:$PATH"
  # Keep DDS traffic of tests and demos on this machine unless the caller chose otherwise.
  export ROS_AUTOMATIC_DISCOVERY_RANGE="${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"
fi
unset _pr_root
