#!/usr/bin/env bash
# colcon build of the pi07 packages (symlink install: edits to Python sources need no rebuild).
# Skipped when no package manifest, setup file, CMakeLists or interface file changed since the last build.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
set +u; . scripts/env.sh; set -u
# One build at a time in this workspace (several shells or agents may call this at once).
exec 9>"$ROOT/.build.lock"
flock 9
# What the install space depends on: manifests, setup files, interfaces, and the data files setup.py installs.
want=$( (ls -d pi07_*/ ; find pi07_* colcon.meta -type f \( -name package.xml -o -name setup.py -o -name setup.cfg \
  -o -name CMakeLists.txt -o -name '*.msg' -o -name '*.srv' -o -name '*.action' -o -name colcon.meta \
  -o -path '*/config/*' -o -path '*/launch/*' -o -path '*/checkpoints/*' \) | sort | xargs sha256sum) \
  | sha256sum | cut -c1-16)-${PI07_ROS_FROM}
stamp="$ROOT/install/.pi07-build-stamp"
if [ "${1:-}" != --force ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "[pi07 build] install/ up to date"
  exit 0
fi
echo "[pi07 build] colcon build"
t0=$SECONDS
colcon build --symlink-install --base-paths "$ROOT" --event-handlers console_cohesion- parallel_status- \
  --cmake-args -DBUILD_TESTING=OFF -DPython3_EXECUTABLE="$(command -v python3)"
echo "$want" > "$stamp"
echo "[pi07 build] done in $((SECONDS - t0)) s"
