"""Diagnosis (privileged): closed-loop rollouts of a goal-conditioned VLA whose image-encoder goal
estimate is replaced, during pick subtasks (the gantry) or the put-back (both embodiments), by the true goal from the
simulator. The success it reaches bounds
what better perception alone could give; the gap to 100 % is the action pathway's.

    python scripts/oracle_goal_rollout.py --checkpoint pi07_bringup/checkpoints/sim_gantry/vla --seeds 10000 10020
    python scripts/oracle_goal_rollout.py --checkpoint C --family restore_layout --memory   # the put-back's goal

The goal is the gantry's state where a pick segment ends in the demonstrations: above the block at the lift
height, the tool at the block's yaw folded into [-pi/4, pi/4), the gripper closed on a 4 cm block (the dataset's
pick goals show z = 0.134 m and gripper = 0.512). `--noise-cm` adds Gaussian x-y error of that RMS to it.
With `--family restore_layout` the goal replaced is the put-back's ("put the red block back where it was"): its x
and y become the block's starting spot, the other dimensions stay the estimate's; the estimate's x-y error there
is reported (`putback_error_cm_median`). `--family middle_place`: the same for its place, to the middle of the table.

The arm (`--embodiment arm7 --family restore_layout`; its goal is a joint state): the estimate's tool pose (forward
kinematics) is moved to the starting spot in x-y, keeping its height and yaw, and solved back to joints from the
estimate's own configuration; the gripper stays the estimate's. The arm's rollouts keep its executor's 1.2 s gripper
dwell (`--gripper-dwell-s`).

    python scripts/oracle_goal_rollout.py --checkpoint pi07_bringup/checkpoints/sim_arm7/vla --embodiment arm7 \
        --family restore_layout --memory --seeds 10000 10060 --jobs 2"""
from __future__ import annotations

import argparse
import functools
import json

import numpy as np
import torch

PICK_GOAL_Z = 0.134        # m, tcp height where a pick segment ends (after the lift)
PICK_GOAL_GRIPPER = 0.512  # the gripper state closed on a block


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--checkpoint', required=True)
    parser.add_argument('--seeds', type=int, nargs=2, default=[10000, 10020], metavar=('FIRST', 'END'))
    parser.add_argument('--execute-steps', type=int, default=2)
    parser.add_argument('--noise-cm', type=float, default=0.0)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--family', default='ordered_place',
                        choices=['ordered_place', 'restore_layout', 'middle_place'])
    parser.add_argument('--memory', action='store_true', help='memory frames in the prompt (the keyframe too)')
    parser.add_argument('--embodiment', default='gantry', choices=['gantry', 'arm7'])
    parser.add_argument('--gripper-dwell-s', type=float, default=None, help='default: 1.2 for arm7, 0 otherwise')
    parser.add_argument('--jobs', type=int, default=1, help='split the seeds over this many processes (1 thread each)')
    parser.add_argument('--out', default=None, help='write results + summary as JSON here')
    args = parser.parse_args(argv)
    if args.embodiment == 'arm7' and args.family == 'ordered_place':
        parser.error('the arm: only a place goal (--family restore_layout or middle_place)')
    seeds = list(range(*args.seeds))
    if args.jobs > 1:
        from pi07_policy.data.rollout import over_seed_shares
        parts = over_seed_shares(functools.partial(episodes, args, threads=1), seeds, args.jobs)
        results = sorted((r for part, _ in parts for r in part), key=lambda r: r['seed'])
        putback_errors = [e for _, errors in parts for e in errors]
    else:
        results, putback_errors = episodes(args, seeds, args.threads)
    from pi07_policy.data.rollout import summarize
    summary = summarize(results)
    if putback_errors:
        summary['putback_error_cm_median'] = (np.median(putback_errors, axis=0) * 100).round(1).tolist()
    print(json.dumps(summary))
    if args.out:
        with open(args.out, 'w') as f:
            json.dump({'results': results, 'summary': summary, 'noise_cm': args.noise_cm}, f, indent=1)
    return 0


def episodes(args, seeds: list[int], threads: int) -> tuple[list[dict], list[np.ndarray]]:
    torch.set_num_threads(threads)
    from pi07_policy.data.rollout import rollout
    from pi07_policy.models.vla.policy import VLAPolicy
    from pi07_sim.env import TabletopEnv
    from pi07_sim.tasks import MIDDLE_XY

    policy = VLAPolicy.from_checkpoint(args.checkpoint, expected_embodiment=args.embodiment)
    model, processor = policy.model, policy.processor
    if not model.config.goal_conditioning:
        raise SystemExit(f'{args.checkpoint}: not a goal-conditioned VLA (--goal-conditioning)')
    env = TabletopEnv(args.embodiment, args.family, image_size=96)
    rng = np.random.default_rng(0)
    estimate = model.vision_goal

    def current_subtask():
        done, total = env.progress()
        return env.task.subtasks[done] if done < total else None

    def true_pick_goal(tokens, batch):
        goal = estimate(tokens, batch)
        sub = current_subtask()
        if sub is None or sub.kind != 'pick':
            return goal
        block = env.block_position(sub.obj)
        yaw = ((env.block_yaw(sub.obj) + np.pi / 4) % (np.pi / 2)) - np.pi / 4
        true = np.array([block[0], block[1], PICK_GOAL_Z, yaw, PICK_GOAL_GRIPPER], np.float32)
        true[:2] += rng.normal(size=2) * args.noise_cm / 100 / np.sqrt(2)
        goal = goal.clone()
        goal[0, :len(true)] = torch.as_tensor(processor._norm['state'].normalize(true), dtype=goal.dtype)
        return goal

    putback_errors = []

    def true_putback_goal(tokens, batch):
        goal = estimate(tokens, batch)
        sub = current_subtask()
        if sub is None or sub.target not in ('origin', 'middle'):
            return goal
        est = processor._norm['state'].unnormalize(goal[0].detach().numpy().astype(np.float64))
        origin = np.array(env.task.layout.blocks[sub.obj][:2] if sub.target == 'origin' else MIDDLE_XY)
        spot = origin + rng.normal(size=2) * args.noise_cm / 100 / np.sqrt(2)
        true = est.copy()
        if env.ik is None:   # the gantry: the state is the tool's pose
            putback_errors.append(np.abs(est[:2] - origin))
            true[:2] = spot
        else:   # the arm: the estimate's tool pose, moved to the spot, solved back to joints from its configuration
            joints = est[:len(env.ik.qpos_index)]
            tool, rotation = env.ik.forward(joints)
            putback_errors.append(np.abs(tool[:2] - origin))
            yaw = float(np.arctan2(rotation[1, 0], rotation[0, 0]))
            true[:len(joints)] = env.ik.solve(np.array([spot[0], spot[1], tool[2]]), yaw, joints, iterations=100)
        goal = goal.clone()
        goal[0] = torch.as_tensor(processor._norm['state'].normalize(true), dtype=goal.dtype)
        return goal

    model.vision_goal = true_pick_goal if args.family == 'ordered_place' else true_putback_goal
    dwell = args.gripper_dwell_s if args.gripper_dwell_s is not None else (1.2 if args.embodiment == 'arm7' else 0.0)
    try:
        results = rollout(policy, env, seeds, execute_steps=args.execute_steps, use_memory=args.memory,
                          metadata={'speed': 4, 'quality': 5, 'mistake': False}, gripper_dwell_s=dwell,
                          progress=args.jobs == 1)
    finally:
        env.close()
    return results, putback_errors


if __name__ == '__main__':
    raise SystemExit(main())
