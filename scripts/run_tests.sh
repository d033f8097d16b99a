#!/usr/bin/env bash
# Lint (ruff) and every test: each package's unit tests and the cross-package tests in test/.
# Extra arguments go to pytest (e.g. scripts/run_tests.sh -k msgs -x).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
set +u; . scripts/env.sh; set -u
echo "[pi07 test] ruff check"
ruff check .
echo "[pi07 test] pytest (ROS_DOMAIN_ID=$ROS_DOMAIN_ID, PI07_DDS_MODE=$PI07_DDS_MODE)"
exec python -m pytest "$@"
