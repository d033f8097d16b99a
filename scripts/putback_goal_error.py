"""Diagnosis (privileged): where the arm's goal head sends the put-back, in the table's coordinates.

The arm's VLA is goal-conditioned in joint space: its goal head estimates the joint state where the current subtask
ends, and the action expert follows it. On `restore_layout` the last subtask ("put the <colour> block back where it
was") needs the block's starting spot, which only the memory keyframe shows. This script rolls the shipped (or any)
arm VLA out on that task with memory, as `pi07_policy.data.rollout --family restore_layout --memory` does, and at
every re-plan of the put-back it asks the goal head for its estimate (`VLAPolicy.predict_goal`, the same inputs as
the chunk) and maps it to the tool's table position with the arm's forward kinematics (the simulator's model).
Per episode that reaches the put-back: the estimate's distance to the block's starting spot in x–y at the
subtask's start, at its end, and its median over the subtask; how far the block ended from that spot; success.

    python scripts/putback_goal_error.py --checkpoint pi07_bringup/checkpoints/sim_arm7/vla \
        --seeds 10000 10060 --jobs 2 --out out/putback/a_kfr.json

It asks: in the put-backs that miss, is the goal head's estimate far from the spot in the table's coordinates (an
end-effector goal would help), or near it (the action pathway does not follow it)? docs/evaluation.md, session 25.
"""
from __future__ import annotations

import argparse
import functools
import json
from pathlib import Path

import numpy as np

METADATA = {'speed': 4, 'quality': 5, 'mistake': False}


def episodes(checkpoint: str, seeds: list[int], dwell_s: float) -> list[dict]:
    import torch
    torch.set_num_threads(1)
    from pi07_policy.data.rollout import MemoryFrames, run_episode
    from pi07_policy.models.vla.policy import VLAPolicy
    from pi07_sim.env import TabletopEnv
    policy = VLAPolicy.from_checkpoint(checkpoint, expected_embodiment='arm7')
    env = TabletopEnv('arm7', 'restore_layout', image_size=96)   # the rollout harness's default
    keep_first = bool(policy.config.memory_keeps_first_frame)
    results = []
    try:
        for seed in seeds:
            policy.reseed(seed)
            memory = MemoryFrames(keep_first=keep_first)   # the harness's own memory, kept the same way
            samples: list[tuple[float, float]] = []        # (time, x-y error of the estimate's tool position)
            state = {'step': 0}

            def on_frame(frame, memory=memory, samples=samples, state=state):
                obs, subtask = frame['obs'], frame['subtask']
                memory.add(obs['images'], obs['time'])
                state['step'] += 1
                if not subtask or 'back where' not in subtask or state['step'] % 2:
                    return   # the put-back only, at the harness's re-plan period (every 2 steps)
                goal = policy.predict_goal({'images': obs['images'], 'state': obs['state'], 'subtask': subtask,
                                            'task': env.task.instruction, 'memory_images': memory.get(),
                                            'metadata': {**METADATA, 'control_mode': env.action_spec.control_mode}})
                tool, _ = env.ik.forward(np.asarray(goal[:7], np.float64))
                obj = next(s.obj for s in env.task.subtasks if s.target == 'origin')
                spot = np.asarray(env.task.layout.blocks[obj][:2])
                samples.append((float(obs['time']), float(np.linalg.norm(tool[:2] - spot))))

            r = run_episode(policy, env, seed, execute_steps=2, metadata=METADATA, use_memory=True,
                            gripper_dwell_s=dwell_s, on_frame=on_frame)
            if samples:
                errors = [e for _, e in samples]
                r.update(putback_goal_error_start_m=round(errors[0], 4), putback_goal_error_end_m=round(errors[-1], 4),
                         putback_goal_error_median_m=round(float(np.median(errors)), 4),
                         putback_s=round(samples[-1][0] - samples[0][0], 1))
            results.append(r)
    finally:
        env.close()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--checkpoint', default='pi07_bringup/checkpoints/sim_arm7/vla')
    parser.add_argument('--seeds', type=int, nargs=2, default=(10000, 10060), metavar=('FIRST', 'END'))
    parser.add_argument('--jobs', type=int, default=2)
    parser.add_argument('--gripper-dwell-s', type=float, default=1.2)
    parser.add_argument('--out', default='out/putback/putback.json')
    args = parser.parse_args(argv)
    seeds = list(range(*args.seeds))
    from pi07_policy.data.rollout import over_seed_shares
    parts = over_seed_shares(functools.partial(episodes, args.checkpoint, dwell_s=args.gripper_dwell_s), seeds,
                             args.jobs)
    results = sorted((r for part in parts for r in part), key=lambda r: r['seed'])
    reached = [r for r in results if 'putback_goal_error_start_m' in r]
    print(f'{sum(r["success"] for r in results)} / {len(results)} succeeded; {len(reached)} reached the put-back')
    print('| seed | result | block from its spot (m) | estimate from the spot: start / median / end (m) |')
    print('|---|---|---|---|')
    for r in reached:
        origin = next(iter(r.get('origin_error_m', {}).values()), float('nan'))
        print(f"| {r['seed']} | {'success' if r['success'] else 'failed'} | {origin:.3f} | "
              f"{r['putback_goal_error_start_m']:.3f} / {r['putback_goal_error_median_m']:.3f} / "
              f"{r['putback_goal_error_end_m']:.3f} |")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({'checkpoint': args.checkpoint, 'seeds': list(args.seeds), 'episodes': results},
                              indent=1))
    print(f'written {out}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
