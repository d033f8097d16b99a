"""Diagnosis (privileged): how much would a perfect world model raise success? The VLA's subgoal images come from
the simulator itself: a shadow copy of the episode is handed to the scripted expert, which carries the current
subtask out from the current state, and the shadow's cameras at the moment the expert moves to the next subtask
(`--mode end`, the "subtask done" subgoals of training), or 3 s ahead and never past that moment (`--mode
ahead`), are the subgoal images. As the world-model node, they are made on each new subtask and every
`--period-s` while it lasts.

    python scripts/oracle_subgoals.py --checkpoint pi07_bringup/checkpoints/sim_arm7/vla --embodiment arm7 \
        --seeds 10000 10040 --jobs 2 --subgoals oracle none world_model

The policy never sees the simulator's state: only these images, as it would see a world model's. The rows
bound what subgoal images can add on a task (docs/evaluation.md, "Subgoal images: an upper bound")."""
from __future__ import annotations

import argparse
import copy
import functools
import json
from pathlib import Path

import numpy as np

MAX_LOOKAHEAD_S = 12.0


class OracleSubgoals:
    """A `subgoal_fn` for `pi07_policy.data.rollout`: the frame where the scripted expert, started from the
    episode's current state in a shadow simulator, finishes the current subtask (or `ahead_s` on, if sooner)."""

    def __init__(self, env, seed: int, mode: str = 'end', period_s: float = 3.0, ahead_s: float = 3.0):
        from pi07_sim.env import TabletopEnv
        self.env, self.seed, self.mode = env, int(seed), mode
        self.period_s, self.ahead_s = float(period_s), float(ahead_s)
        self.shadow = TabletopEnv(env.embodiment, env.task_family, image_size=env.image_size)
        self.subtask, self.last_s, self.images = None, -np.inf, None
        self.made, self.lookahead_s = 0, []

    def close(self) -> None:
        self.shadow.close()

    def __call__(self, obs, subtask, task=None, metadata=None):
        if subtask is None:
            return None
        now = float(obs['time'])
        if subtask != self.subtask or now - self.last_s >= self.period_s:
            self.images, self.subtask, self.last_s = self._imagine(), subtask, now
            self.made += 1
        return self.images

    def _imagine(self) -> dict[str, np.ndarray]:
        from pi07_sim.expert import make_expert
        env, shadow = self.env, self.shadow
        shadow.reset(seed=self.seed)                              # the episode's task and layout
        shadow._tracker = copy.deepcopy(env._tracker)             # its progress (privileged, as the whole script)
        shadow.set_target(env.current_target())
        shadow.data.qvel[:] = env.data.qvel
        shadow.sync(env.state(), env.object_poses(), env.time)
        expert = make_expert(shadow, 'expert', seed=0)
        expert.take_over()
        first, limit = expert.index, MAX_LOOKAHEAD_S if self.mode == 'end' else self.ahead_s
        t0 = shadow.time
        while expert.subtask is not None and expert.index == first and shadow.time - t0 < limit:
            action, _ = expert.act()
            shadow.set_target(action)
            shadow.advance(shadow.control_period)
        self.lookahead_s.append(shadow.time - t0)
        return {cam: shadow.render(cam) for cam in shadow.camera_names}


def run_share(args, seeds: list[int]) -> list[dict]:
    import torch
    torch.set_num_threads(1)
    from pi07_policy.data.rollout import WorldModelSubgoals, _generate, run_episode
    from pi07_policy.models.vla.policy import VLAPolicy
    from pi07_sim.env import TabletopEnv

    policy = VLAPolicy.from_checkpoint(args.checkpoint, expected_embodiment=args.embodiment)
    world_model = None
    if args.subgoals == 'world_model':
        from pi07_world_model.modeling_world_model import WorldModel
        world_model = WorldModel.from_pretrained(args.world_model).eval()
    dwell = args.gripper_dwell_s if args.gripper_dwell_s is not None else (1.2 if args.embodiment == 'arm7' else 0.0)
    env = TabletopEnv(args.embodiment, args.family, image_size=96)
    results = []
    try:
        for seed in seeds:
            policy.reseed(seed)
            subgoal_fn = None
            if args.subgoals == 'oracle':
                subgoal_fn = OracleSubgoals(env, seed, args.mode, args.period_s)
            elif world_model is not None:
                subgoal_fn = WorldModelSubgoals(lambda obs, seed: _generate(world_model, obs, seed), args.period_s)
            result = run_episode(policy, env, seed, execute_steps=args.execute_steps, gripper_dwell_s=dwell,
                                 inference_delay_steps=args.inference_delay_steps, chunking=args.chunking,
                                 use_memory=args.memory, subgoal_fn=subgoal_fn, use_task=not args.no_task,
                                 metadata={'speed': 4, 'quality': 5, 'mistake': False})
            if isinstance(subgoal_fn, OracleSubgoals):
                result['subgoals_made'] = subgoal_fn.made
                result['lookahead_s_mean'] = round(float(np.mean(subgoal_fn.lookahead_s)), 2)
                subgoal_fn.close()
            results.append(result)
    finally:
        env.close()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--checkpoint', required=True)
    parser.add_argument('--embodiment', default='arm7')
    parser.add_argument('--family', default='ordered_place')
    parser.add_argument('--seeds', type=int, nargs=2, default=[10000, 10040], metavar=('FIRST', 'END'))
    parser.add_argument('--subgoals', nargs='+', default=['none', 'oracle'], choices=['none', 'oracle', 'world_model'])
    parser.add_argument('--world-model', default=None, help='for --subgoals world_model (default: the profile\'s)')
    parser.add_argument('--mode', default='end', choices=['end', 'ahead'])
    parser.add_argument('--period-s', type=float, default=3.0)
    parser.add_argument('--memory', action='store_true')
    parser.add_argument('--no-task', action='store_true',
                        help='the VLA\'s prompt without the task instruction (subtask, metadata and images only)')
    parser.add_argument('--chunking', default='rtc', choices=['rtc', 'sync', 'pause'])
    parser.add_argument('--inference-delay-steps', type=int, default=1)
    parser.add_argument('--execute-steps', type=int, default=2)
    parser.add_argument('--gripper-dwell-s', type=float, default=None,
                        help='default: 1.2 for arm7 (its profile), 0 otherwise')
    parser.add_argument('--jobs', type=int, default=2)
    parser.add_argument('--out', default=None, help='write the rows as JSON here')
    args = parser.parse_args(argv)
    if args.world_model is None:
        profile = 'sim_arm7' if args.embodiment == 'arm7' else f'sim_{args.embodiment}'
        args.world_model = str(Path(__file__).resolve().parents[1] / 'pi07_bringup/checkpoints' / profile
                               / 'world_model')

    seeds = list(range(*args.seeds))
    rows = {}
    for kind in args.subgoals:
        run_args = argparse.Namespace(**{**vars(args), 'subgoals': kind})
        from pi07_policy.data.rollout import over_seed_shares
        parts = over_seed_shares(functools.partial(run_share, run_args), seeds, args.jobs)
        episodes = sorted((r for part in parts for r in part), key=lambda r: r['seed'])
        ok = sum(r['success'] for r in episodes)
        rows[kind] = {'successes': ok, 'episodes': len(episodes),
                      'mean_progress': round(float(np.mean([r['progress'] for r in episodes])), 3),
                      'failed_seeds': [r['seed'] for r in episodes if not r['success']], 'episodes_detail': episodes}
        print(f"{kind}: {ok}/{len(episodes)} (progress {rows[kind]['mean_progress']})", flush=True)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({'args': vars(args), 'rows': rows}, indent=1))
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
