"""``evaluate_delay``: RTC against synchronous execution under inference delay, in simulated time (no ROS).

    python -m pi07_policy.evaluate_delay --checkpoint pi07_bringup/checkpoints/sim_gantry/vla --embodiment gantry \
        --seeds 10000 10040 --delays 1 2 3 4 --modes rtc sync pause --execute-steps 2 --jobs 2 --out out/delay/gantry

Each cell is a closed-loop rollout (`pi07_policy.data.rollout`, every option of its CLI applies) in which every
chunk arrives D control steps after its observation, the world going on meanwhile:
  rtc    Real-Time Chunking, as the action expert plans it (the rows played during the delay frozen; the model's
         `rtc_method`: guided inpainting, or a model trained with training-time RTC continuing them)
  sync   each chunk sampled from scratch and switched to on arrival, D rows in (the RTC paper's naive asynchronous
         baseline)
  pause  synchronous: the robot holds still while each chunk is computed, then plays `--execute-steps` of its
         rows from row 0 (the RTC paper's synchronous baseline; episodes last longer)
With `--gripper-confirm-s L` a chunk whose first row to play was planned more than L s after its observation stops
the robot before its first gripper switch, and a chunk taken with the robot still decides it
(control/gripper_confirm.py): synchronous at the grasps and releases, as the mode says elsewhere.
D steps of 0.1 s stand for the ROS stack's own latency (≈ 1 step) plus its injected delay (0–300 ms:
D = 1..4); here the delay is exact and no other load on the machine changes it. Writes `delay.json` (every episode, a
summary per cell, and per mode the success lost from the smallest to the largest delay) and `delay.md`.
"""
from __future__ import annotations

import copy
import json
import sys
import time
from pathlib import Path
from typing import Any

from .data.rollout import CHUNKING, build_parser, check_args, run_seeds, summarize


def sweep(args, delays: list[int], modes: list[str], progress: bool = True) -> dict[str, Any]:
    seeds = list(range(*args.seeds))
    cells = []
    for mode in modes:
        for delay in delays:
            cell = copy.copy(args)
            cell.chunking, cell.inference_delay_steps = mode, delay
            t0 = time.monotonic()
            episodes = run_seeds(cell, seeds)
            summary = summarize(episodes)
            cells.append({'mode': mode, 'delay_steps': delay, 'summary': summary, 'episodes': episodes,
                          'wall_s': round(time.monotonic() - t0, 1)})
            if progress:
                print(f"{mode} D={delay}: {summary['successes']}/{summary['episodes']} "
                      f"(progress {summary['mean_progress']:.2f})", flush=True)
    return {'checkpoint': args.checkpoint, 'embodiment': args.embodiment, 'seeds': [seeds[0], seeds[-1] + 1],
            'execute_steps': args.execute_steps, 'rtc_method': args.rtc_method,
            'gripper_confirm_s': getattr(args, 'gripper_confirm_s', 0.0), 'delays': delays, 'modes': modes,
            'cells': cells, 'comparison': compare(cells, delays, modes)}


def compare(cells: list[dict], delays: list[int], modes: list[str]) -> dict[str, Any]:
    """Per mode: success at each delay and what it lost from the smallest delay to the largest."""
    rate = {(c['mode'], c['delay_steps']): c['summary']['success_rate'] for c in cells}
    out: dict[str, Any] = {}
    for mode in modes:
        curve = {f'D={d}': rate.get((mode, d)) for d in delays}
        first, last = rate.get((mode, min(delays))), rate.get((mode, max(delays)))
        out[mode] = {'success': curve,
                     'success_lost': None if first is None or last is None else round(first - last, 4)}
    return out


def markdown(report: dict[str, Any]) -> str:
    delays = report['delays']
    lines = [f"RTC vs synchronous execution in simulated time: `{report['checkpoint']}` ({report['embodiment']}), "
             f"seeds {report['seeds'][0]}–{report['seeds'][1] - 1}, {report['execute_steps']} rows per chunk "
             f"(pause) / re-planned every max(rows, D) steps, rtc_method {report['rtc_method']}"
             + (f", the gripper switches of chunks more than {report['gripper_confirm_s']} s late confirmed from a "
                f"chunk taken with the robot still" if report.get('gripper_confirm_s') else '') + '.', '',
             '| mode | ' + ' | '.join(f'D = {d} ({d * 100} ms)' for d in delays) + ' | success lost |',
             '|---|' + '---|' * (len(delays) + 1)]
    by = {(c['mode'], c['delay_steps']): c['summary'] for c in report['cells']}
    for mode in report['modes']:
        row = []
        for d in delays:
            s = by[(mode, d)]
            time_ok = s.get('mean_time_s_success')
            row.append(f"{s['successes']} / {s['episodes']}, {s['mean_progress']:.2f}"
                       + (f', {time_ok:.1f} s' if time_ok is not None else ''))
        lost = report['comparison'][mode]['success_lost']
        lines.append(f'| {mode} | ' + ' | '.join(row) + f" | {'' if lost is None else f'{lost:+.2f}'} |")
    lines += ['', 'Cells: successes / episodes, mean progress, mean episode time of the successes.']
    return '\n'.join(lines) + '\n'


def main(argv: list[str] | None = None) -> int:
    parser = build_parser(__doc__.splitlines()[0])
    parser.add_argument('--delays', type=int, nargs='+', default=[1, 2, 3, 4],
                        help='inference delays to sweep, control steps')
    parser.add_argument('--modes', nargs='+', default=list(CHUNKING), choices=list(CHUNKING))
    parser._option_string_actions['--out'].help = 'directory for delay.json and delay.md'
    args = parser.parse_args(argv)
    check_args(parser, args)
    if any(d < 0 for d in args.delays):
        parser.error(f'--delays must be >= 0, got {args.delays}')
    report = sweep(args, sorted(set(args.delays)), args.modes)
    text = markdown(report)
    print(text)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / 'delay.json').write_text(json.dumps(report, indent=1))
        (out / 'delay.md').write_text(text)
        print(f'written {out}/delay.json, delay.md')
    return 0


if __name__ == '__main__':
    sys.exit(main())
