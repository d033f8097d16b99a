#!/usr/bin/env bash
# `make demo`: set up (idempotent), then the full pi07 stack closed loop on the simulated robot for both
# embodiments with the shipped checkpoints; a results table, a GIF per embodiment, plots and demo_summary.json
# (out/demo/ and ./demo_summary.json). Extra arguments go to pi07_bringup.demo (e.g. --episodes 3).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
t0=$SECONDS
bash scripts/setup.sh
set +u; . scripts/env.sh; set -u   # venv, install space, loopback DDS on a ROS domain of this run's own
echo "[pi07 demo] set-up took $((SECONDS - t0)) s; ROS_DOMAIN_ID=$ROS_DOMAIN_ID"
python -m pi07_bringup.demo "$@"
echo "[pi07 demo] done in $((SECONDS - t0)) s (set-up included)"
