"""The pi07 demo: the full stack closed loop on the simulated robot, for both embodiments (`make demo`).

For each profile (sim_arm7, sim_gantry) the embedded runner brings up sim + memory + high_level_policy +
world_model + action_expert + chunk_executor with the shipped checkpoints (pi07_bringup/checkpoints/<profile>/),
the evaluator (pi07_bringup.evaluate) runs a few held-out episodes through it, and the demo prints a results table
(success, progress, episode time, inference latency) and writes, under ``--out`` (out/demo/):

    <profile>.gif       the scene camera over the first episode
    results.png         success rate and progress per embodiment
    progress.png        subtasks done over time in each episode
    latency.png         inference latency of the action expert per embodiment
    <profile>/eval.json, eval.md    the evaluator's full report
    demo_summary.json   the figures printed (also written to ./demo_summary.json)

Usage: ``python -m pi07_bringup.demo [--episodes 2] [--profiles sim_arm7,sim_gantry]`` after
``source scripts/env.sh``; ``scripts/demo.sh`` (``make demo``) sets everything up first.
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from pi07_bringup.evaluate import (
    CHECKPOINT_SUBDIRS,
    EvalOptions,
    Evaluator,
    MissingCheckpoints,
    check_checkpoints,
    checkpoints_in,
    default_checkpoints,
    write_gif,
    write_report,
)
from pi07_sim.tasks import FAMILIES

DEFAULT_PROFILES = ('sim_arm7', 'sim_gantry')
MAKE_CHECKPOINTS = ('make them with:  bash scripts/train_checkpoints.sh   (collect demonstrations -> convert -> '
                    'train, ≈ 30 min per embodiment on 2 cores; docs/evaluation.md#checkpoints), or point the demo '
                    'at other checkpoints: --checkpoint-root DIR (DIR/<profile>/{vla,high_level,world_model})')


def profile_checkpoints(profile: str, root: str | None) -> dict[str, str]:
    """node -> checkpoint directory: DIR/<profile>/... with --checkpoint-root, else the shipped ones."""
    if root:
        return checkpoints_in(str(Path(root) / profile))
    from pi07_bringup.profile import load_profile

    return default_checkpoints(load_profile(profile))


def check_all(profiles: list[str], root: str | None) -> None:
    problems = []
    for profile in profiles:
        try:
            check_checkpoints(profile_checkpoints(profile, root), CHECKPOINT_SUBDIRS)
        except MissingCheckpoints as exc:
            problems.append(f'{profile}: {exc}')
    if problems:
        raise MissingCheckpoints('\n'.join(problems) + '\n' + MAKE_CHECKPOINTS)


# ------------------------------------------------------------------------------------------------ outputs
def profile_figures(report: dict, latencies_ms: list[float]) -> dict:
    """What the demo prints for one embodiment (from the evaluator's report)."""
    row = report['rows'][0]
    s = row['summary']
    return {
        'embodiment': report['embodiment'], 'episodes': s['episodes'], 'success_rate': s['success_rate'],
        'progress': s['progress'], 'episode_time_s': s['episode_time_s'], 'latency_p50_ms': s['latency_p50_ms'],
        'latency_p95_ms': s['latency_p95_ms'], 'chunk_rate_hz': s['chunk_rate_hz'], 'jerk_rms': s['jerk_rms'],
        'seeds': report['seeds'], 'duration_s': report['duration_s'],
        'per_episode': [{k: e[k] for k in ('seed', 'family', 'state', 'success', 'subtasks_done', 'subtasks_total',
                                           'progress', 'episode_time_s', 'latency_p50_ms', 'timeline')}
                        for e in row['episodes']],
        'latency_samples': len(latencies_ms),
    }


def _fmt(value, spec) -> str:
    return '–' if value is None or (isinstance(value, float) and not math.isfinite(value)) else f'{value:{spec}}'


def results_table(figures: dict[str, dict]) -> str:
    lines = ['| profile | embodiment | episodes | success | progress | episode time (s) | latency p50 / p95 (ms) '
             '| chunks/s |', '|---|---|---|---|---|---|---|---|']
    for name, f in figures.items():
        lines.append(f'| {name} | {f["embodiment"]} | {f["episodes"]} | {_fmt(f["success_rate"], ".0%")} | '
                     f'{_fmt(f["progress"], ".2f")} | {_fmt(f["episode_time_s"], ".1f")} | '
                     f'{_fmt(f["latency_p50_ms"], ".0f")} / {_fmt(f["latency_p95_ms"], ".0f")} | '
                     f'{_fmt(f["chunk_rate_hz"], ".1f")} |')
    return '\n'.join(lines)


def write_plots(figures: dict[str, dict], latencies: dict[str, list[float]], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    names = list(figures)
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    success = [figures[n]['success_rate'] or 0.0 for n in names]
    progress = [figures[n]['progress'] or 0.0 for n in names]
    ax.bar(x - 0.18, success, 0.36, label='success rate')
    ax.bar(x + 0.18, progress, 0.36, label='progress (subtasks done in order)')
    ax.set_xticks(x, [f'{n}\n({figures[n]["episodes"]} episodes)' for n in names])
    ax.set_ylim(0, 1.05)
    ax.set_title('pi07 closed loop on the simulated robot')
    ax.legend(loc='upper right', fontsize=8)
    fig.tight_layout()
    results = out / 'results.png'
    fig.savefig(results, dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    for name in names:
        if latencies[name]:
            ax.hist(latencies[name], bins=30, alpha=0.6, label=f'{name} (p50 {np.median(latencies[name]):.0f} ms)')
    ax.set_xlabel('action expert inference latency per chunk (ms)')
    ax.set_ylabel('chunks')
    ax.legend(fontsize=8)
    fig.tight_layout()
    latency = out / 'latency.png'
    fig.savefig(latency, dpi=110)
    plt.close(fig)

    # Subtasks done over each episode's time: where a policy gets stuck shows as a flat step.
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    for i, name in enumerate(names):
        for j, episode in enumerate(figures[name]['per_episode']):
            points = list(episode.get('timeline') or []) + [(episode['episode_time_s'], episode['subtasks_done'])]
            times = [0.0] + [t for t, _ in points]
            done = [0] + [d for _, d in points]
            ax.step(times, np.array(done) + 0.04 * (j - 0.5), where='post', color=f'C{i}', alpha=0.8,
                    label=name if j == 0 else None)
    total = max([e['subtasks_total'] or 0 for f in figures.values() for e in f['per_episode']] + [1])
    ax.set_ylim(-0.3, total + 0.3)
    ax.set_yticks(range(total + 1))
    ax.set_xlabel('episode time (s, simulated)')
    ax.set_ylabel('subtasks done in order')
    ax.legend(fontsize=8)
    fig.tight_layout()
    progress = out / 'progress.png'
    fig.savefig(progress, dpi=110)
    plt.close(fig)
    return [results, latency, progress]


def write_outputs(results: dict[str, tuple[dict, list[float], list[np.ndarray]]], out: Path,
                  summary_path: Path | None, started: float, note: str = '') -> dict:
    """Everything the demo writes, from the evaluations: GIFs, plots, demo_summary.json. Returns the summary."""
    out.mkdir(parents=True, exist_ok=True)
    figures, latencies, files = {}, {}, []
    for name, (report, latency_ms, frames) in results.items():
        figures[name] = profile_figures(report, latency_ms)
        latencies[name] = latency_ms
        gif = write_gif(frames, out / f'{name}.gif')
        if gif:
            files.append(gif)
            figures[name]['gif'] = str(gif)
    files += write_plots(figures, latencies, out)
    summary = {
        'what': 'pi07 full stack (sim, memory, high_level_policy, world_model, action_expert, chunk_executor) '
                'closed loop on the simulated robot; held-out seeds; success = the sim\'s task check',
        'checkpoints': note, 'profiles': figures, 'table': results_table(figures),
        'aborted': {name: report['aborted'] for name, (report, _, _) in results.items() if report.get('aborted')},
        'files': [str(p) for p in files], 'wall_time_s': time.monotonic() - started,
        'written': time.strftime('%Y-%m-%dT%H:%M:%S'),
    }
    text = json.dumps(summary, indent=1, default=lambda v: None) + '\n'
    (out / 'demo_summary.json').write_text(text)
    if summary_path is not None:
        summary_path.write_text(text)
    return summary


# ------------------------------------------------------------------------------------------------ main
def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='pi07 demo: the full stack closed loop on the simulated robot.')
    parser.add_argument('--profiles', default=','.join(DEFAULT_PROFILES), help='comma-separated profiles')
    parser.add_argument('--episodes', type=int, default=2, help='episodes (held-out seeds) per embodiment')
    parser.add_argument('--first-seed', type=int, default=10000)
    parser.add_argument('--checkpoint-root', default=None,
                        help='DIR/<profile>/{vla,high_level,world_model} instead of the shipped checkpoints')
    parser.add_argument('--out', default='out/demo', help='output directory')
    parser.add_argument('--summary', default='demo_summary.json', help='where the summary JSON also goes ("" none)')
    parser.add_argument('--max-episode-s', type=float, default=0.0,
                        help='cut episodes after this much simulated time (0: the sim\'s 30 s limit)')
    parser.add_argument('--family', default='ordered_place', choices=FAMILIES, help='task family')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    profiles = [p for p in args.profiles.split(',') if p]
    try:
        check_all(profiles, args.checkpoint_root)
    except MissingCheckpoints as exc:
        print(f'[demo] cannot run: {exc}', file=sys.stderr)
        return 2
    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    results = {}
    for profile in profiles:
        print(f'[demo] {profile}: the full stack, {args.episodes} episode(s) of {args.family}', flush=True)
        options = EvalOptions(profile=profile, checkpoints=profile_checkpoints(profile, args.checkpoint_root),
                              configs='full', seeds=args.episodes, first_seed=args.first_seed,
                              out=str(out / profile), max_episode_s=args.max_episode_s, gif_episodes=1,
                              checkpoint_note='given with --checkpoint-root' if args.checkpoint_root else 'shipped',
                              families=(args.family,))
        evaluator = Evaluator(options, log=lambda line, p=profile: print(f'[demo {p}] {line}', flush=True))
        report = evaluator.run()
        write_report(report, out / profile)
        results[profile] = (report, [v for e in evaluator.episodes for v in e.latency_ms], evaluator.frames)
    summary = write_outputs(results, out, Path(args.summary) if args.summary else None, started,
                            'given with --checkpoint-root' if args.checkpoint_root else 'shipped')
    print('\n' + summary['table'] + '\n')
    print(f'[demo] wrote {", ".join(summary["files"])}, {out / "demo_summary.json"}'
          + (f' and {args.summary}' if args.summary else '') + f' in {summary["wall_time_s"]:.0f} s')
    aborted = {name: report['aborted'] for name, (report, _, _) in results.items() if report['aborted']}
    for name, reason in aborted.items():
        print(f'[demo] {name} did not complete: {reason} (node logs: {out / name / "logs"})', file=sys.stderr)
    return 1 if aborted else 0


if __name__ == '__main__':
    sys.exit(main())
