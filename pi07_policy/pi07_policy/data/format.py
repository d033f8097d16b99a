"""The pi07 dataset on disk: one directory, plain .npy arrays and JSON (no pickle), memory-mapped when read.

    <dataset>/
      index.json                    format version, profile fields, episodes (name, length, split, texts,
                                    metadata, outcome), what the converter skipped and why
      norm_stats.json               per-dimension mean/std/q01/q99 of 'state' and 'actions' (train split)
      episodes/<name>/
        time.npy                    (T,) float64, s since the first step (control-rate grid)
        state.npy                   (T, Ds) float32, joint state in the profile's order
        actions.npy                 (T, Da) float32, the command issued after the frame at step t
        subtask_index.npy           (T,) int16, index into the episode's `subtasks`, -1 = none
        progress.npy                (T,) int16, subtasks completed in order (task_status), -1 = not recorded
        camera_<name>.npy           (T, S, S, 3) uint8 RGB per camera

Readers open the arrays with `np.load(..., mmap_mode='r')`: DataLoader workers share the page cache instead
of copying episodes, and a sample touches only the frames it uses.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

FORMAT_VERSION = 1
INDEX_FILE = 'index.json'
NORM_STATS_FILE = 'norm_stats.json'
EPISODES_DIR = 'episodes'
ARRAYS = ('time', 'state', 'actions', 'subtask_index', 'progress')


def write_episode(root: Path, episode) -> dict[str, Any]:
    """Write one Episode's arrays under root/episodes/<name>/ (atomically); return its index entry."""
    final = root / EPISODES_DIR / episode.name
    tmp = final.with_name(final.name + '.tmp')
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    np.save(tmp / 'time.npy', episode.time.astype(np.float64))
    np.save(tmp / 'state.npy', episode.state.astype(np.float32))
    np.save(tmp / 'actions.npy', episode.actions.astype(np.float32))
    np.save(tmp / 'subtask_index.npy', episode.subtask_index.astype(np.int16))
    progress = episode.progress if episode.progress is not None else np.full(len(episode), -1)
    np.save(tmp / 'progress.npy', np.asarray(progress, np.int16))
    for cam, frames in episode.images.items():
        np.save(tmp / f'camera_{cam}.npy', np.ascontiguousarray(frames, np.uint8))
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    return {'name': episode.name, 'length': len(episode), 'instruction': episode.instruction,
            'plan': episode.plan, 'subtasks': episode.subtasks, 'metadata': episode.metadata,
            'outcome': episode.outcome, 'notes': episode.notes}


@dataclass
class EpisodeArrays:
    """Memory-mapped arrays of one episode."""

    time: np.ndarray
    state: np.ndarray
    actions: np.ndarray
    subtask_index: np.ndarray
    progress: np.ndarray
    images: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.time)


def open_episode(root: Path, name: str, cameras: tuple[str, ...] | list[str], mmap: bool = True) -> EpisodeArrays:
    d = Path(root) / EPISODES_DIR / name
    mode = 'r' if mmap else None
    arrays = {k: np.load(d / f'{k}.npy', mmap_mode=mode, allow_pickle=False) for k in ARRAYS}
    images = {c: np.load(d / f'camera_{c}.npy', mmap_mode=mode, allow_pickle=False) for c in cameras}
    return EpisodeArrays(images=images, **arrays)


def read_index(root: str | Path) -> dict[str, Any]:
    path = Path(root) / INDEX_FILE
    if not path.is_file():
        raise FileNotFoundError(f'{root} is not a pi07 dataset (no {INDEX_FILE}); make one with `convert`')
    index = json.loads(path.read_text())
    if index.get('format_version') != FORMAT_VERSION:
        raise ValueError(f'{path}: format_version {index.get("format_version")} (this code reads {FORMAT_VERSION})')
    return index


def read_norm_stats(root: str | Path) -> dict[str, Any]:
    return json.loads((Path(root) / NORM_STATS_FILE).read_text())


def write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + '.tmp')
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)
