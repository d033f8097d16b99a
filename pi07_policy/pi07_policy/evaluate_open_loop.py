"""``evaluate_open_loop``: a VLA checkpoint against recorded actions of held-out episodes (no simulator).

    evaluate_open_loop --checkpoint pi07_bringup/checkpoints/sim_arm7/vla --dataset data/datasets/arm7 \
        --split val --out out/open_loop/arm7

At every `--stride`-th step of each episode the policy predicts a chunk from the recorded observation (images,
state, task, subtask, metadata; `--with-subgoal` / `--with-memory` add those from the recording) with a fixed
noise seed; it is compared with the recorded commands t..t+H-1 (padding excluded). Writes `open_loop.json`
(per-dimension MAE and RMSE in robot units, over the whole chunk and for its first action, also relative to the
dimension's range in the data) and `open_loop.png` (predicted first actions vs recorded, over time, for the first
episodes, and the per-dimension error).

`--goal` (models trained with `--goal-weight`) adds `goal` to the report: the image encoder's goal head at the first
step of every subtask segment (where the named object is farthest) against the recorded state where that subtask
ended, per state dimension in robot units. It measures perception apart from control, in seconds: for the gantry
the x / y errors are how far from the block the head thinks the block is. `--no-actions` skips the chunk part.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .data.datasets import VLADataset


def evaluate(policy, dataset: VLADataset, stride: int = 5, max_episodes: int | None = None,
             progress: bool = True) -> dict[str, Any]:
    from tqdm.auto import tqdm
    names = [e['name'] for e in dataset.episodes][:max_episodes]
    action_names = list(dataset.index['action_names'])
    horizon = policy.config.action_horizon
    items = [i for i, (k, t) in enumerate(dataset.items) if dataset.episodes[k]['name'] in names and t % stride == 0]
    errs, first_errs, traces = [], [], {}
    for i in tqdm(items, desc='open loop', disable=not progress):
        s = dataset[i]
        k, t = dataset.items[i]
        obs = {key: s.get(key) for key in ('images', 'state', 'task', 'subtask', 'metadata', 'subgoal_images',
                                           'memory_images')}
        pred = policy.infer({**obs, 'mode': 'sync'})['actions']
        n = min(horizon, int(s['action_mask'].sum()))
        err = pred[:n] - s['actions'][:n]
        errs.append(err)
        first_errs.append(err[0])
        trace = traces.setdefault(s['episode'], {'t': [], 'pred': [], 'true': []})
        trace['t'].append(t)
        trace['pred'].append(pred[0].tolist())
        trace['true'].append(s['actions'][0].tolist())
    all_err = np.concatenate(errs)
    first = np.stack(first_errs)
    stats = dataset.norm_stats['actions']
    span = np.maximum(np.asarray(stats['q99']) - np.asarray(stats['q01']), 1e-6)

    def per_dim(e):
        return {'mae': np.abs(e).mean(0).tolist(), 'rmse': np.sqrt((e ** 2).mean(0)).tolist(),
                'mae_relative_to_range': (np.abs(e).mean(0) / span).tolist()}

    return {'episodes': names, 'predictions': len(items), 'horizon': horizon, 'action_names': action_names,
            'chunk': per_dim(all_err), 'first_action': per_dim(first),
            'mean_mae_relative_to_range': float((np.abs(all_err).mean(0) / span).mean()),
            'traces': traces}


def evaluate_goal(policy, root: str | Path, split: str = 'val', include: list[str] | None = None,
                  max_samples: int | None = None, progress: bool = True, with_memory: bool = False,
                  subgoals: str = 'none', world_model=None, seed: int = 0) -> dict[str, Any]:
    """The image encoder's goal head at the first step of each subtask segment vs the recorded state at the
    segment's end (`VLAPolicy.predict_goal`), robot units; overall and per subtask text. `with_memory`: the
    recorded memory frames too, laid out as the model was trained (a keyframe model's head reads the first).
    `subgoals` (for a head that reads them: `--subgoal-goal-head`): 'none'; 'recorded', the frame where the subtask
    is done; 'world_model', what `world_model` (a WorldModel) draws from the images, the subtask and the episode's
    first frames (its keyframe, whether or not the policy gets memory)."""
    from tqdm.auto import tqdm
    if subgoals not in ('none', 'recorded', 'world_model'):
        raise ValueError(f"subgoals must be 'none', 'recorded' or 'world_model', got {subgoals!r}")
    if subgoals == 'world_model' and world_model is None:
        raise ValueError("subgoals='world_model' needs a world_model")
    dataset = VLADataset(root, split, horizon=policy.config.action_horizon, with_actions=False,
                         segment_start_fraction=1e-9, include=include,   # one step per segment: its first
                         memory_prob=1.0 if with_memory else 0.0,
                         memory_keep_first=policy.config.memory_keeps_first_frame,
                         subgoal_prob=1.0 if subgoals == 'recorded' else 0.0, subgoal_end_prob=1.0)
    n = len(dataset) if max_samples is None else min(max_samples, len(dataset))
    errors, subtasks = [], []
    for i in tqdm(range(n), desc='goal head', disable=not progress):
        s = dataset[i]
        keys = ['images', 'state', 'task', 'subtask', 'metadata', 'memory_images']
        obs = {key: s.get(key) for key in keys + (['subgoal_images'] if subgoals == 'recorded' else [])}
        if subgoals == 'world_model' and s.get('subtask'):
            request = {key: s.get(key) for key in ('images', 'subtask', 'task', 'metadata')}
            first = dataset.arrays(dataset.items[i][0]).images    # the episode's first frames: the keyframe
            request['keyframe_images'] = {c: np.array(first[c][0]) for c in dataset.camera_names}
            obs['subgoal_images'] = world_model.generate(request, seed=seed)['subgoal_images']
        errors.append(policy.predict_goal(obs) - s['goal_state'])
        subtasks.append(s.get('subtask') or '')
    err = np.abs(np.stack(errors))

    def summary(e: np.ndarray) -> dict[str, Any]:
        return {'samples': len(e), 'mae': e.mean(0).tolist(), 'median': np.median(e, 0).tolist(),
                'p90': np.percentile(e, 90, axis=0).tolist()}

    per_subtask = {text: summary(err[[j for j, t in enumerate(subtasks) if t == text]])
                   for text in sorted(set(subtasks))}
    return {'state_names': list(dataset.index['state_names']), 'with_memory': with_memory, 'subgoals': subgoals,
            **summary(err), 'per_subtask': per_subtask}


def plot(report: dict[str, Any], path: Path, max_episodes: int = 2) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    names = report['action_names']
    d = len(names)
    eps = list(report['traces'])[:max_episodes]
    fig, axes = plt.subplots(d + 1, 1, figsize=(9, 1.6 * (d + 1)), squeeze=False)
    colours = plt.rcParams['axes.prop_cycle'].by_key()['color']
    for j, name in enumerate(names):
        ax = axes[j, 0]
        for e, ep in enumerate(eps):
            tr = report['traces'][ep]
            c = colours[e % len(colours)]
            ax.plot(tr['t'], np.asarray(tr['true'])[:, j], color=c, lw=1.5, label=f'{ep} recorded' if j == 0 else None)
            ax.plot(tr['t'], np.asarray(tr['pred'])[:, j], color=c, lw=1, ls='--',
                    label=f'{ep} predicted' if j == 0 else None)
        ax.set_ylabel(name, fontsize=7)
        ax.tick_params(labelsize=6)
    axes[0, 0].legend(fontsize=6, loc='upper right')
    axes[d - 1, 0].set_xlabel('step (control rate)', fontsize=7)
    ax = axes[d, 0]
    x = np.arange(d)
    ax.bar(x - 0.2, report['chunk']['mae_relative_to_range'], 0.4, label='whole chunk')
    ax.bar(x + 0.2, report['first_action']['mae_relative_to_range'], 0.4, label='first action')
    ax.set_xticks(x, names, fontsize=6)
    ax.set_ylabel('MAE / range', fontsize=7)
    ax.legend(fontsize=6)
    fig.suptitle(f"open loop: {report['predictions']} chunks, mean MAE/range "
                 f"{report['mean_mae_relative_to_range']:.3f}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='evaluate_open_loop', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--checkpoint', required=True)
    parser.add_argument('--dataset', required=True)
    parser.add_argument('--split', default='val')
    parser.add_argument('--episodes', type=int, default=None, help='at most this many episodes')
    parser.add_argument('--stride', type=int, default=5, help='predict at every n-th step')
    parser.add_argument('--include', nargs='*', default=None, help='only episodes whose name contains one of these')
    parser.add_argument('--with-subgoal', action='store_true')
    parser.add_argument('--with-memory', action='store_true')
    parser.add_argument('--goal', action='store_true',
                        help="also the goal head's error at each subtask's start (models trained with --goal-weight)")
    parser.add_argument('--no-actions', action='store_true', help='skip the action chunks (with --goal)')
    parser.add_argument('--goal-subgoals', default='none', choices=['none', 'recorded', 'world_model'],
                        help='with --goal: subgoal images for a goal head that reads them: the recorded frame of the '
                             'subtask done, or drawn by --world-model (from the images, subtask and first frames)')
    parser.add_argument('--world-model', default=None, help='with --goal-subgoals world_model: its checkpoint')
    parser.add_argument('--out', default='out/open_loop')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    if args.no_actions and not args.goal:
        parser.error('--no-actions leaves nothing to evaluate without --goal')
    if (args.goal_subgoals == 'world_model') != (args.world_model is not None):
        parser.error('--goal-subgoals world_model and --world-model go together')
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    from .models.vla.policy import VLAPolicy
    policy = VLAPolicy.from_checkpoint(args.checkpoint, seed=args.seed)
    if args.goal and not policy.has_goal_head:
        parser.error(f'--goal: {args.checkpoint} has no goal head (trained without --goal-weight)')
    report, summary = {}, {}
    if not args.no_actions:
        dataset = VLADataset(args.dataset, args.split, horizon=policy.config.action_horizon,
                             subgoal_prob=1.0 if args.with_subgoal else 0.0,
                             memory_prob=1.0 if args.with_memory else 0.0, include=args.include,
                             memory_keep_first=policy.config.memory_keeps_first_frame)
        report = evaluate(policy, dataset, args.stride, args.episodes)
        summary = {k: report[k] for k in ('predictions', 'mean_mae_relative_to_range')}
        summary['first_action_mae'] = dict(zip(report['action_names'], np.round(report['first_action']['mae'], 4)
                                               .tolist()))
    if args.goal:
        world_model = None
        if args.world_model:
            from pi07_world_model.modeling_world_model import WorldModel
            world_model = WorldModel.from_pretrained(args.world_model)
        report['goal'] = evaluate_goal(policy, args.dataset, args.split, args.include, with_memory=args.with_memory,
                                       subgoals=args.goal_subgoals, world_model=world_model, seed=args.seed)
        summary['goal_median_error'] = dict(zip(report['goal']['state_names'],
                                                np.round(report['goal']['median'], 4).tolist()))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report['checkpoint'], report['dataset'], report['split'] = args.checkpoint, args.dataset, args.split
    (out / 'open_loop.json').write_text(json.dumps(report, indent=1))
    written = [out / 'open_loop.json']
    if not args.no_actions:
        plot(report, out / 'open_loop.png')
        written.append(out / 'open_loop.png')
    print(json.dumps(summary))
    print('wrote ' + ' and '.join(map(str, written)))
    return 0


if __name__ == '__main__':
    sys.exit(main())
