# Source this file (bash or zsh) to get the project's environment in a shell:
#   source scripts/env.sh                    # ROS 2 Kilted (the default)
#   ROS_DISTRO=jazzy source scripts/env.sh   # ROS 2 Jazzy (made by `make setup ROS_DISTRO=jazzy`)
# It activates .venv (made by `make setup`) and points ROS 2 at the wheels and at this package's
# generated messages in install/. For Jazzy: .venv-jazzy and install-jazzy/, and `panoptic_ros`
# imports from the installed copy in install-jazzy (the source tree's generated message modules are
# Kilted's); the tests against Jazzy run in the source tree's copy, build-jazzy/tree.
_pr_root=$(cd "$(dirname "${BASH_SOURCE[0]:-${(%):-%x}}")/.." && pwd)
case "${ROS_DISTRO:-kilted}" in
  kilted) _pr_sfx="" ;;
  jazzy) _pr_sfx="-jazzy" ;;
  *) _pr_sfx="unsupported" ;;
esac
if [ "$_pr_sfx" = unsupported ]; then
  echo "panoptic_ros: ROS_DISTRO=$ROS_DISTRO is not set up by this project (kilted or jazzy)" >&2
elif [ ! -x "$_pr_root/.venv$_pr_sfx/bin/python" ]; then
  echo "panoptic_ros: no .venv$_pr_sfx yet; run 'make setup${_pr_sfx:+ ROS_DISTRO=jazzy}' in $_pr_root first" >&2
else
  . "$_pr_root/.venv$_pr_sfx/bin/activate"
  export PANOPTIC_ROS_ROOT="$_pr_root"
  export ROS_DISTRO="${ROS_DISTRO:-kilted}"
  export AMENT_PREFIX_PATH="$_pr_root/install$_pr_sfx:$_pr_root/.venv$_pr_sfx${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
  export LD_LIBRARY_PATH="$_pr_root/install$_pr_sfx/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  if [ -n "$_pr_sfx" ]; then
    export PYTHONPATH="$_pr_root/install$_pr_sfx/lib/python3.11/site-packages${PYTHONPATH:+:$PYTHONPATH}"
  fi
  # The node executables, as `ros2 run panoptic_ros <exe>` would find them.
  export PATH="$_pr_root/install$_pr_sfx/lib/panoptic_ros:$PATH"
  # Keep DDS traffic of tests and demos on this machine unless the caller chose otherwise.
  export ROS_AUTOMATIC_DISCOVERY_RANGE="${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"
fi
unset _pr_root _pr_sfx
