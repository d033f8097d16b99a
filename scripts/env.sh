# Source this file (bash) to use a pi07 workspace:  source scripts/env.sh
# It activates the venv, makes it the ROS underlay when ROS 2 comes from PyPI wheels, applies pi07's DDS
# settings (loopback only, a ROS domain of its own: pi07_bringup/pi07_bringup/dds_env.py decides them) and
# sources the colcon install space when it exists.
PI07_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PI07_ROOT
if [ -f "$PI07_ROOT/.venv/bin/activate" ]; then
  # shellcheck disable=SC1091
  . "$PI07_ROOT/.venv/bin/activate"
fi
if [ -z "${ROS_DISTRO:-}" ] && [ -n "${VIRTUAL_ENV:-}" ]; then
  # ROS 2 from PyPI wheels: the venv is the underlay prefix (share/<pkg>/cmake, lib/*.so, share/ament_index).
  export PI07_ROS_FROM=wheels
  case ":${AMENT_PREFIX_PATH:-}:" in *":$VIRTUAL_ENV:"*) ;; *) export AMENT_PREFIX_PATH="$VIRTUAL_ENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}" ;; esac
  case ":${CMAKE_PREFIX_PATH:-}:" in *":$VIRTUAL_ENV:"*) ;; *) export CMAKE_PREFIX_PATH="$VIRTUAL_ENV${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}" ;; esac
else
  export PI07_ROS_FROM=system
fi
export ROS_LOG_DIR="${ROS_LOG_DIR:-$PI07_ROOT/log/ros}"
export MUJOCO_GL="${MUJOCO_GL:-egl}"
export LP_NUM_THREADS="${LP_NUM_THREADS:-1}"   # Mesa's software renderer: leave a core for the models
eval "$(python3 "$PI07_ROOT/pi07_bringup/pi07_bringup/dds_env.py" --shell)"
if [ -f "$PI07_ROOT/install/setup.bash" ]; then
  # colcon's setup scripts are not `set -u` safe (COLCON_TRACE).
  case $- in *u*) set +u; . "$PI07_ROOT/install/setup.bash"; set -u ;; *) . "$PI07_ROOT/install/setup.bash" ;; esac
fi
