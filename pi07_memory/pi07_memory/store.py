"""Memory without ROS (MEM): short-term visual memory and long-term language memory persisted to disk."""
from __future__ import annotations

import json
import os
import re
import time
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from pi07_common.memory_layout import memory_slots


class VisualMemory:
    """The last ``frames_per_camera`` frames of each camera, kept ``stride_s`` apart (MEM: 6 frames, 1 s apart).
    With ``keep_first`` the oldest slot holds the first frame since the last reset instead (a MEM keyframe: the
    start of the task stays in memory, e.g. where a block stood before it was moved)."""

    STALE_WINDOW_S = 2.0

    def __init__(self, cameras: list[str], frames_per_camera: int = 6, stride_s: float = 1.0,
                 keep_first: bool = False):
        if frames_per_camera < 1 or stride_s <= 0:
            raise ValueError('frames_per_camera must be >= 1 and stride_s > 0')
        self.cameras = list(cameras)
        self.frames_per_camera = frames_per_camera
        self.stride_s = stride_s
        self.keep_first = keep_first
        self._frames: dict[str, deque[tuple[float, np.ndarray]]] = {
            c: deque(maxlen=frames_per_camera) for c in self.cameras}
        self._first: dict[str, tuple[float, np.ndarray]] = {}
        self._not_before = 0.0
        self.stale_dropped = 0   # frames refused as older than the task (diagnostics)

    def offer(self, camera: str, stamp_s: float, frame: np.ndarray) -> bool:
        """Keep ``frame`` if at least one stride passed since the last kept frame of that camera. A frame stamped
        up to ``STALE_WINDOW_S`` before the last ``reset(since_s=...)`` is dropped: it shows the scene before the
        task began (a frame still queued when the task arrived), and as the keyframe it would stand for the wrong
        start all task long. Older stamps are another clock (a replayed bag), not a late frame: kept."""
        if self._not_before - self.STALE_WINDOW_S <= stamp_s < self._not_before:
            self.stale_dropped += 1
            return False
        frames = self._frames[camera]
        if frames and stamp_s < frames[-1][0]:
            frames.clear()  # time went backwards (sim reset, bag replay): start over
            self._first.pop(camera, None)
        # 5 % slack so that frames arriving at exactly the stride are not skipped for jitter.
        if frames and stamp_s - frames[-1][0] < 0.95 * self.stride_s:
            return False
        frames.append((stamp_s, frame))
        self._first.setdefault(camera, (stamp_s, frame))
        return True

    def ready(self) -> bool:
        return all(self._frames[c] for c in self.cameras)

    def snapshot(self) -> dict[str, list[tuple[float, np.ndarray]]]:
        """Per camera, exactly frames_per_camera (stamp, frame) pairs, oldest first (``memory_slots``): the oldest
        is repeated at the front while fewer frames exist; with keep_first the first slot is the first frame.
        Cameras with no frame yet are left out."""
        out = {}
        for camera, frames in self._frames.items():
            if frames:
                items = list(frames)
                first = self._first.get(camera)
                if self.keep_first and first is not None and first[0] < items[0][0]:
                    items = [first] + items
                out[camera] = memory_slots(items, self.frames_per_camera, self.keep_first)
        return out

    def reset(self, since_s: float = 0.0) -> None:
        """Forget every frame; with ``since_s`` > 0 (the task's start stamp), also refuse frames stamped before it."""
        for frames in self._frames.values():
            frames.clear()
        self._first.clear()
        self._not_before = since_s


@dataclass(frozen=True)
class MemoryRevision:
    revision: int
    summary: str
    subtask_index: int
    stamp: float


class LanguageMemoryStore:
    """Language memory per task with every revision kept, one JSON file per task under ``storage_dir``.

    Writes are atomic (temporary file + fsync + rename): a crash leaves the previous revision, never half a file.
    A file that cannot be read is moved aside (``*.corrupt-<time>``), not deleted, and reported by ``problems``.
    """

    FORMAT = 1

    def __init__(self, storage_dir: str | os.PathLike):
        self.storage_dir = Path(storage_dir)
        self.storage_dir.mkdir(parents=True, exist_ok=True)
        self.problems: list[str] = []
        self._tasks: dict[str, list[MemoryRevision]] = {}
        for path in sorted(self.storage_dir.glob('*.json')):
            self._load(path)

    @staticmethod
    def _file_name(task_id: str) -> str:
        safe = re.sub(r'[^A-Za-z0-9_.-]', '_', task_id) or '_'
        return f'{safe}.json'

    def _load(self, path: Path) -> None:
        try:
            data = json.loads(path.read_text())
            if data.get('format') != self.FORMAT:
                raise ValueError(f'format {data.get("format")!r}, expected {self.FORMAT}')
            revisions = [MemoryRevision(**r) for r in data['revisions']]
            self._tasks[str(data['task_id'])] = revisions
        except (OSError, ValueError, KeyError, TypeError) as exc:
            aside = path.with_name(f'{path.name}.corrupt-{int(time.time())}')
            path.rename(aside)
            self.problems.append(f'{path.name}: unreadable ({exc}); moved to {aside.name}')

    def _save(self, task_id: str) -> None:
        path = self.storage_dir / self._file_name(task_id)
        tmp = path.with_suffix('.json.tmp')
        payload = {'format': self.FORMAT, 'task_id': task_id,
                   'revisions': [asdict(r) for r in self._tasks[task_id]]}
        with open(tmp, 'w') as f:
            json.dump(payload, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def update(self, task_id: str, summary: str, subtask_index: int = 0, stamp: float | None = None) -> MemoryRevision:
        revisions = self._tasks.setdefault(task_id, [])
        if revisions and revisions[-1].summary == summary and revisions[-1].subtask_index == subtask_index:
            return revisions[-1]  # the same update twice (e.g. a retransmission) is not a new revision
        revision = MemoryRevision(revision=len(revisions) + 1, summary=summary, subtask_index=subtask_index,
                                  stamp=time.time() if stamp is None else stamp)
        revisions.append(revision)
        self._save(task_id)
        return revision

    def latest(self, task_id: str) -> MemoryRevision | None:
        revisions = self._tasks.get(task_id)
        return revisions[-1] if revisions else None

    def history(self, task_id: str) -> list[MemoryRevision]:
        return list(self._tasks.get(task_id, []))

    def tasks(self) -> list[str]:
        return sorted(self._tasks)

    def reset(self, task_id: str = '') -> list[str]:
        """Forget the memory of one task ('' = all). Files are kept aside as ``*.reset-<time>`` (nothing lost)."""
        targets = [task_id] if task_id else list(self._tasks)
        done = []
        for tid in targets:
            if self._tasks.pop(tid, None) is None:
                continue
            path = self.storage_dir / self._file_name(tid)
            if path.exists():
                path.rename(path.with_name(f'{path.name}.reset-{time.time_ns()}'))
            done.append(tid)
        return done
