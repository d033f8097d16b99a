"""Diagnosis (privileged): where and when the policy closes the gripper in closed loop, under inference delay.
Per episode, each commanded close with the tool's distance from the block the subtask names (x-y and height, cm),
the arm's fastest joint speed then, where the command puts the tool against where it is (x-y and height, cm: the
arm's forward kinematics of the commanded joints), the largest gap between the commanded and the measured
position over the other dimensions (rad for the arm, m / rad for the gantry), and whether that block was held
1.5 s later.

    python scripts/gripper_close_trace.py --checkpoint pi07_bringup/checkpoints/sim_arm7/vla --embodiment arm7 \
        --chunking rtc --inference-delay-steps 4 --seeds 10000 10012 [--gripper-confirm-s 0.3]

The policy never sees these positions; they are read from the simulator to explain its failures
(docs/evaluation.md, "Gripper switches under delay")."""
from __future__ import annotations

import argparse
import json

import numpy as np
import torch


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--checkpoint', required=True)
    parser.add_argument('--embodiment', default='arm7')
    parser.add_argument('--seeds', type=int, nargs=2, default=[10000, 10012], metavar=('FIRST', 'END'))
    parser.add_argument('--chunking', default='rtc', choices=['rtc', 'sync', 'pause'])
    parser.add_argument('--inference-delay-steps', type=int, default=4)
    parser.add_argument('--execute-steps', type=int, default=2)
    parser.add_argument('--gripper-confirm-s', type=float, default=0.0)
    parser.add_argument('--gripper-dwell-s', type=float, default=None,
                        help='default: 1.2 for arm7 (its profile), 0 otherwise')
    args = parser.parse_args(argv)

    from pi07_policy.data.rollout import run_episode
    from pi07_policy.models.vla.policy import VLAPolicy
    from pi07_sim.env import TabletopEnv

    torch.set_num_threads(1)
    policy = VLAPolicy.from_checkpoint(args.checkpoint, expected_embodiment=args.embodiment)
    dwell = args.gripper_dwell_s if args.gripper_dwell_s is not None else (1.2 if args.embodiment == 'arm7' else 0.0)
    for seed in range(*args.seeds):
        env = TabletopEnv(args.embodiment, 'ordered_place', image_size=96)
        policy.reseed(seed)
        spec = env.action_spec
        threshold = 0.5 * float(spec.low[-1] + spec.high[-1])
        closes, state = [], {'closed': False, 'open_close': None}

        def on_frame(frame, env=env, closes=closes, state=state, threshold=threshold):
            t = float(env.time)
            done, total = env.progress()
            last = state['open_close']
            if last is not None and t - last['t'] >= 1.5:
                last['held'], state['open_close'] = bool(env.block_grasped(last['block'])), None
            closed = float(frame['action'][-1]) > threshold
            if closed and not state['closed'] and done < total:
                block = env.task.subtasks[done].obj
                tcp, _ = env.tcp_pose()
                position = env.block_position(block)
                command = np.asarray(frame['action'], np.float64)
                commanded_tool = env.ik.forward(command[:-1])[0] if env.ik is not None else command[:3]
                gap = np.abs(command[:-1] - np.asarray(frame['obs']['state'], np.float64)[:-1]).max()
                close = {'t': round(t, 1), 'subtask': env.task.subtasks[done].text, 'block': block,
                         'xy_cm': round(100 * float(np.linalg.norm(tcp[:2] - position[:2])), 1),
                         'dz_cm': round(100 * float(tcp[2] - position[2]), 1),
                         'joint_speed_max': round(float(np.abs(env.joint_velocities()).max()), 2),
                         'command_xy_cm': round(100 * float(np.linalg.norm(commanded_tool[:2] - tcp[:2])), 1),
                         'command_dz_cm': round(100 * float(commanded_tool[2] - tcp[2]), 1),
                         'command_gap': round(float(gap), 3)}
                closes.append(close)
                state['open_close'] = close
            state['closed'] = closed

        result = run_episode(policy, env, seed, execute_steps=args.execute_steps, gripper_dwell_s=dwell,
                             inference_delay_steps=args.inference_delay_steps, chunking=args.chunking,
                             gripper_confirm_s=args.gripper_confirm_s, on_frame=on_frame,
                             metadata={'speed': 4, 'quality': 5, 'mistake': False})
        env.close()
        print(json.dumps({'seed': seed, 'success': result['success'], 'subtasks_done': result['subtasks_done'],
                          'time_s': result['time_s'], 'closes': closes}), flush=True)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
