"""``convert``: recorded bags -> a pi07 dataset directory (format: pi07_policy/data/format.py, docs/data.md).

    convert data/bags/arm7 -o data/datasets/arm7 --profile sim_arm7
    convert bagA bagB some/dir -o out --profile sim_gantry --val-fraction 0.1 --only-successful

Every argument is a bag (a directory holding a .mcap file, or a .mcap file) or a directory searched for bags.
A bag that cannot become an episode (missing topic, truncated or corrupt file, too short, ...) is reported with
the reason and skipped; conversion goes on. Episodes already converted into the output are reused unless
--overwrite. Train/val split by episode (seeded); normalisation statistics from the train split.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from .bag_episode import EpisodeError, read_episode
from .format import EPISODES_DIR, FORMAT_VERSION, INDEX_FILE, NORM_STATS_FILE, open_episode, write_episode, write_json
from .profile_spec import ProfileSpec, load_profile_spec


def find_bags(paths: list[str | Path]) -> list[Path]:
    """Bag directories (or lone .mcap files) under the given paths, sorted, without duplicates."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_file() and p.suffix == '.mcap':
            found.append(p)
        elif p.is_dir():
            if any(p.glob('*.mcap')) or (p / 'metadata.yaml').is_file():
                found.append(p)
            else:
                found += sorted({m.parent for m in p.rglob('*.mcap')} | {m.parent for m in p.rglob('metadata.yaml')})
        else:
            found.append(p)   # reported as missing by convert()
    seen, out = set(), []
    for b in found:
        if b.resolve() not in seen:
            seen.add(b.resolve())
            out.append(b)
    return out


def fit_stats(values: np.ndarray) -> dict[str, list[float]]:
    values = np.asarray(values, np.float64)
    return {'mean': values.mean(0).tolist(), 'std': values.std(0).tolist(),
            'q01': np.quantile(values, 0.01, axis=0).tolist(), 'q99': np.quantile(values, 0.99, axis=0).tolist(),
            'min': values.min(0).tolist(), 'max': values.max(0).tolist()}


def split_episodes(names: list[str], val_fraction: float, seed: int) -> dict[str, str]:
    order = np.random.default_rng(seed).permutation(len(names))
    n_val = int(round(val_fraction * len(names))) if len(names) > 1 else 0
    if val_fraction > 0 and len(names) > 1:
        n_val = max(1, n_val)
    val = {names[i] for i in order[:n_val]}
    return {n: ('val' if n in val else 'train') for n in names}


def convert(bags: list[str | Path], out: str | Path, profile: ProfileSpec, *, val_fraction: float = 0.1,
            seed: int = 0, min_steps: int = 10, only_successful: bool = False, overwrite: bool = False,
            progress: bool = True, log=print) -> dict[str, Any]:
    """Convert bags into `out`; returns the index written to out/index.json (its 'skipped' lists the reasons)."""
    from tqdm.auto import tqdm

    out = Path(out)
    (out / EPISODES_DIR).mkdir(parents=True, exist_ok=True)
    previous: dict[str, dict] = {}
    if not overwrite and (out / INDEX_FILE).is_file():
        import json
        try:
            previous = {e['name']: e for e in json.loads((out / INDEX_FILE).read_text()).get('episodes', [])}
        except (ValueError, KeyError):
            previous = {}
    episodes: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    names: set[str] = set()
    bar = tqdm(find_bags(bags), desc='convert', unit='bag', disable=not progress)
    for bag in bar:
        name = bag.name if bag.is_dir() else bag.stem
        try:
            if not bag.exists():
                raise EpisodeError('no such file or directory')
            if name in names:
                raise EpisodeError(f'duplicate episode name {name!r}')
            if name in previous and (out / EPISODES_DIR / name).is_dir():
                entry = dict(previous[name])
                entry.pop('split', None)
            else:
                episode = read_episode(bag, profile, min_steps=min_steps)
                if only_successful and episode.outcome and not episode.outcome.get('success', True):
                    raise EpisodeError('the episode failed (--only-successful)')
                entry = write_episode(out, episode)
            entry['source'] = str(bag)
        except EpisodeError as exc:
            skipped.append({'bag': str(bag), 'reason': str(exc)})
            bar.write(f'skipping {bag}: {exc}')
            continue
        except Exception as exc:  # one bad bag must never stop the conversion
            skipped.append({'bag': str(bag), 'reason': f'unexpected error: {type(exc).__name__}: {exc}'})
            bar.write(f'skipping {bag}: unexpected error: {type(exc).__name__}: {exc}')
            continue
        names.add(name)
        episodes.append(entry)
    bar.close()
    if not episodes:
        raise SystemExit(f'convert: no episode could be converted ({len(skipped)} skipped)')
    splits = split_episodes([e['name'] for e in episodes], val_fraction, seed)
    for e in episodes:
        e['split'] = splits[e['name']]
    # normalisation statistics over the train split (all episodes if it is empty)
    train_eps = [e for e in episodes if e['split'] == 'train'] or episodes
    states, actions = [], []
    for e in train_eps:
        arrays = open_episode(out, e['name'], ())
        states.append(np.asarray(arrays.state))
        actions.append(np.asarray(arrays.actions))
    norm_stats = {'state': fit_stats(np.concatenate(states)), 'actions': fit_stats(np.concatenate(actions))}
    index = {'format_version': FORMAT_VERSION, 'created': time.strftime('%Y-%m-%dT%H:%M:%S'),
             'profile': profile.name, 'embodiment': profile.embodiment, 'camera_names': list(profile.camera_names),
             'state_names': list(profile.state_names), 'action_names': list(profile.action_names),
             'control_mode': profile.control_mode, 'control_rate_hz': profile.control_rate_hz,
             'num_episodes': len(episodes), 'num_steps': int(sum(e['length'] for e in episodes)),
             'val_fraction': val_fraction, 'split_seed': seed, 'episodes': episodes, 'skipped': skipped}
    write_json(out / NORM_STATS_FILE, norm_stats)
    write_json(out / INDEX_FILE, index)
    # remove episode directories no longer in the index (bags removed from the input)
    for d in (out / EPISODES_DIR).iterdir():
        if d.is_dir() and d.name not in names:
            import shutil
            shutil.rmtree(d)
    n_train = sum(e['split'] == 'train' for e in episodes)
    log(f'converted {len(episodes)} episodes ({n_train} train, {len(episodes) - n_train} val, '
        f'{index["num_steps"]} steps) into {out}; skipped {len(skipped)}')
    for s in skipped:
        log(f'  skipped {s["bag"]}: {s["reason"]}')
    return index


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='convert', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('bags', nargs='+', help='bags, or directories searched for bags')
    parser.add_argument('-o', '--output', required=True, help='dataset directory (created)')
    parser.add_argument('--profile', required=True, help='robot profile name (sim_arm7) or YAML path')
    parser.add_argument('--val-fraction', type=float, default=0.1, help='episodes held out for validation')
    parser.add_argument('--seed', type=int, default=0, help='seed of the train/val split')
    parser.add_argument('--min-steps', type=int, default=10, help='shorter episodes are skipped')
    parser.add_argument('--only-successful', action='store_true', help='skip episodes recorded as failed')
    parser.add_argument('--overwrite', action='store_true', help='re-read bags already converted into the output')
    parser.add_argument('--no-progress', action='store_true')
    args = parser.parse_args(argv)
    profile = load_profile_spec(args.profile)
    convert(args.bags, args.output, profile, val_fraction=args.val_fraction, seed=args.seed,
            min_steps=args.min_steps, only_successful=args.only_successful, overwrite=args.overwrite,
            progress=not args.no_progress)
    return 0


if __name__ == '__main__':
    sys.exit(main())
