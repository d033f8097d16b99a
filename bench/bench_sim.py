"""Simulator benchmark: control steps per second of TabletopEnv with two 96 px cameras, per embodiment.

A control step = one 0.1 s action (50 physics steps of 2 ms) + rendering the scene and wrist cameras; the scripted
expert (inverse kinematics for the arm) chooses the actions, so the robot moves and makes contacts as it does
when collecting data. Baselines measured in the same run: physics only (no rendering) and rendering only
(two cameras, no physics), so the split of the cost is visible. Real time at 10 Hz control = 10 steps/s.

    source scripts/env.sh && python bench/bench_sim.py          # writes out/bench/sim.json

MUJOCO_GL=egl and LP_NUM_THREADS=1 (scripts/env.sh) render on one CPU core with Mesa. The machine is shared:
figures are noisy.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault('MUJOCO_GL', 'egl')
os.environ.setdefault('LP_NUM_THREADS', '1')

ROOT = Path(__file__).resolve().parents[1]


def measure(embodiment: str, steps: int, image_size: int) -> dict:
    from pi07_sim.env import TabletopEnv
    from pi07_sim.expert import make_expert

    env = TabletopEnv(embodiment, 'ordered_place', image_size=image_size, seed=0)
    result = {}
    for mode in ('physics+render', 'physics'):
        env.reset(seed=0)
        expert = make_expert(env, 'expert', seed=0)
        done, seed = 0, 0
        start = time.perf_counter()
        while done < steps:
            action, _ = expert.act()
            env.set_target(action)
            env.advance(env.control_period)
            if mode == 'physics+render':
                env.observe()
            done += 1
            if env.done():  # keep the robot busy: next episode
                seed += 1
                env.reset(seed=seed)
                expert = make_expert(env, 'expert', seed=seed)
        result[mode] = steps / (time.perf_counter() - start)
    start = time.perf_counter()
    for _ in range(steps):
        env.observe()
    result['render'] = steps / (time.perf_counter() - start)
    env.close()
    return {'embodiment': embodiment, 'image_size': image_size, 'cameras': 2, 'steps': steps,
            'steps_per_s': round(result['physics+render'], 1),
            'steps_per_s_physics_only': round(result['physics'], 1),
            'renders_per_s_two_cameras': round(result['render'], 1),
            'real_time_factor': round(result['physics+render'] / 10.0, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--steps', type=int, default=300, help='control steps per measurement')
    parser.add_argument('--image-size', type=int, default=96)
    parser.add_argument('--output', default=str(ROOT / 'out' / 'bench' / 'sim.json'))
    args = parser.parse_args()
    rows = [measure(embodiment, args.steps, args.image_size) for embodiment in ('arm7', 'gantry')]
    print(f'{"embodiment":10} {"steps/s (2 cams)":>16} {"physics only":>13} {"2-cam renders/s":>16} {"x realtime":>11}')
    for r in rows:
        print(f'{r["embodiment"]:10} {r["steps_per_s"]:16.1f} {r["steps_per_s_physics_only"]:13.1f} '
              f'{r["renders_per_s_two_cameras"]:16.1f} {r["real_time_factor"]:11.2f}')
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({'benchmark': 'sim', 'control_rate_hz': 10, 'results': rows}, indent=1))
    print(f'written {out}')


if __name__ == '__main__':
    main()
