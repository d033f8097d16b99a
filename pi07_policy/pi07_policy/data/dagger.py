"""``dagger``: expert labels in the states a learned policy leads to (DAgger with the scripted expert as the
labeller), recorded as ordinary bags that ``convert`` turns into training episodes.

    python -m pi07_policy.data.dagger --checkpoint runs/gantry/vla/checkpoint --embodiment gantry \\
        -o data/bags/gantry/takeover --episodes 120 --seed 20000

For each seed: the policy drives the simulated robot (images, joint state and text only, as in ``rollout``) for a
random 1-16 s, then the scripted expert takes over from whatever state the policy left (a block half grasped, the
tool off course, a block dropped beside the bowl) and finishes the task; only the expert's part is recorded, as
`<embodiment>_<family>_takeover_s<seed>` with the expert's metadata. Behaviour cloning only ever sees the expert's
own states, so a small error of the policy leads it where it has no data (compounding errors); these episodes
show how to get back from where the policy actually goes. Episodes the policy finishes on its own are skipped.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from .rollout import run_episode

TAKEOVER_LABEL = 'takeover'


class NothingToTakeOver(Exception):
    """The policy finished (or ran out of time) before the takeover point: nothing for the expert to show."""


def policy_prelude(policy, seed: int, seconds: float, metadata: dict, execute_steps: int = 5):
    """A `record_episode` prelude: reset the env with `seed` and let the policy drive for `seconds`."""

    def prelude(env) -> None:
        run_episode(policy, env, seed, execute_steps=execute_steps, metadata=metadata, max_time_s=seconds)
        if env.success() or env.timed_out():
            raise NothingToTakeOver(f'seed {seed}: the policy ended the episode before {seconds:.1f} s')

    return prelude


def collect_takeovers(policy, env, out_dir: Path, seeds, *, takeover_s=(1.0, 16.0), metadata: dict | None = None,
                      execute_steps: int = 5, rng_seed: int = 0, progress: bool = True) -> list[dict]:
    """One takeover bag per seed under `out_dir` (existing bags are kept); returns the outcomes."""
    from tqdm.auto import tqdm

    from pi07_sim.collect import record_episode

    metadata = metadata or {'speed': 4, 'quality': 5, 'mistake': False}
    rng = np.random.default_rng(rng_seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    bar = tqdm(list(seeds), desc='takeover', unit='episode', disable=not progress)
    for index, seed in enumerate(bar):
        seconds = float(rng.uniform(*takeover_s))      # drawn for every seed: the schedule does not depend on skips
        name = f'{env.embodiment}_{env.task_family}_{TAKEOVER_LABEL}_s{seed:04d}'
        if (out_dir / name).exists():
            continue
        try:
            outcome = record_episode(env, out_dir, 'expert', seed, index,
                                     prelude=policy_prelude(policy, seed, seconds, metadata, execute_steps),
                                     label=TAKEOVER_LABEL)
        except NothingToTakeOver as err:
            bar.write(f'skipped: {err}')
            continue
        outcome['takeover_s'] = round(seconds, 2)
        results.append(outcome)
        bar.set_postfix(expert_success=f"{sum(r['success'] for r in results)}/{len(results)}")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='dagger', description=__doc__.split('\n\n')[0])
    parser.add_argument('--checkpoint', required=True, help='VLA checkpoint that drives before the takeover')
    parser.add_argument('--embodiment', required=True)
    parser.add_argument('--family', default='ordered_place')
    parser.add_argument('-o', '--output', required=True, help='directory for the bags (created)')
    parser.add_argument('--episodes', type=int, default=100)
    parser.add_argument('--seed', type=int, default=20000, help='first task seed (evaluation uses 10000..)')
    parser.add_argument('--takeover-s', type=float, nargs=2, default=(1.0, 16.0), metavar=('MIN', 'MAX'),
                        help='the policy drives for a uniform random time in this range (s)')
    parser.add_argument('--execute-steps', type=int, default=5)
    parser.add_argument('--image-size', type=int, default=96)
    args = parser.parse_args(argv)
    import torch
    torch.set_num_threads(1)
    from pi07_sim.env import TabletopEnv

    from ..models.vla.policy import VLAPolicy
    policy = VLAPolicy.from_checkpoint(args.checkpoint, expected_embodiment=args.embodiment)
    env = TabletopEnv(args.embodiment, args.family, image_size=args.image_size)
    out = Path(args.output)
    results = collect_takeovers(policy, env, out, range(args.seed, args.seed + args.episodes),
                                takeover_s=tuple(args.takeover_s), execute_steps=args.execute_steps,
                                rng_seed=args.seed)
    env.close()
    summary_path = out / 'summary.json'
    previous = json.loads(summary_path.read_text()) if summary_path.exists() else []
    summary_path.write_text(json.dumps(previous + results, indent=1))
    ok = sum(r['success'] for r in results)
    print(f'{len(results)} takeover episodes recorded in {out} (the expert finished {ok}); '
          f'mean takeover at {np.mean([r["takeover_s"] for r in results]) if results else 0:.1f} s')
    return 0


if __name__ == '__main__':
    sys.exit(main())
