"""Memory without ROS: visual frames at a stride, language memory revisions persisted across restarts."""
import json

import numpy as np

from pi07_memory.store import LanguageMemoryStore, VisualMemory


def frame(value):
    return np.full((4, 4, 3), value, dtype=np.uint8)


def test_visual_memory_keeps_frames_at_stride_oldest_first():
    memory = VisualMemory(['scene', 'wrist'], frames_per_camera=3, stride_s=1.0)
    kept = [memory.offer('scene', t, frame(int(t * 10))) for t in np.arange(0.0, 5.01, 0.25)]
    assert sum(kept) == 6  # t = 0, 1, 2, 3, 4, 5
    snapshot = memory.snapshot()
    assert list(snapshot) == ['scene']  # no wrist frame yet
    assert [s for s, _ in snapshot['scene']] == [3.0, 4.0, 5.0]
    assert not memory.ready()


def test_visual_memory_pads_with_oldest_and_restarts_when_time_goes_back():
    memory = VisualMemory(['scene'], frames_per_camera=4, stride_s=0.5)
    memory.offer('scene', 10.0, frame(1))
    memory.offer('scene', 10.5, frame(2))
    stamps = [s for s, _ in memory.snapshot()['scene']]
    assert stamps == [10.0, 10.0, 10.0, 10.5]
    memory.offer('scene', 1.0, frame(3))  # sim reset / bag loop
    assert [s for s, _ in memory.snapshot()['scene']] == [1.0] * 4


def test_language_memory_persists_revisions_across_restart(tmp_path):
    store = LanguageMemoryStore(tmp_path)
    assert store.latest('t1') is None
    store.update('t1', 'the red block is in the bowl', 2)
    store.update('t1', 'the red block is in the bowl', 2)  # duplicate: not a new revision
    store.update('t1', 'the red and blue blocks are in the bowl', 4)
    store.update('t/2', 'nothing yet', 0)
    restarted = LanguageMemoryStore(tmp_path)
    assert restarted.latest('t1').revision == 2
    assert restarted.latest('t1').summary == 'the red and blue blocks are in the bowl'
    assert [r.subtask_index for r in restarted.history('t1')] == [2, 4]
    assert restarted.tasks() == ['t/2', 't1']


def test_language_memory_reset_keeps_files_aside(tmp_path):
    store = LanguageMemoryStore(tmp_path)
    store.update('a', 'x')
    store.update('b', 'y')
    assert store.reset('a') == ['a']
    assert store.latest('a') is None and store.latest('b').summary == 'y'
    assert any('.reset-' in p.name for p in tmp_path.iterdir())
    assert LanguageMemoryStore(tmp_path).tasks() == ['b']


def test_corrupt_memory_file_is_moved_aside_not_lost(tmp_path):
    store = LanguageMemoryStore(tmp_path)
    store.update('good', 'fine')
    (tmp_path / 'bad.json').write_text('{"format": 1, "task_id": "bad", "revisions": [')  # truncated
    (tmp_path / 'old.json').write_text(json.dumps({'format': 99, 'task_id': 'old', 'revisions': []}))
    reopened = LanguageMemoryStore(tmp_path)
    assert reopened.tasks() == ['good']
    assert len(reopened.problems) == 2 and any('bad.json' in p for p in reopened.problems)
    assert len(list(tmp_path.glob('bad.json.corrupt-*'))) == 1


def test_visual_memory_keyframe_keeps_the_first_frame_until_reset():
    """keep_first (MEM keyframe): the oldest slot is the task's first frame, the rest the latest; the layout is
    the one the dataset and the rollout give the model (pi07_common.memory_layout.memory_slots)."""
    memory = VisualMemory(['scene'], frames_per_camera=3, stride_s=1.0, keep_first=True)
    for t in range(6):
        memory.offer('scene', float(t), frame(t))
    assert [s for s, _ in memory.snapshot()['scene']] == [0.0, 4.0, 5.0]
    plain = VisualMemory(['scene'], frames_per_camera=3, stride_s=1.0)
    for t in range(6):
        plain.offer('scene', float(t), frame(t))
    assert [s for s, _ in plain.snapshot()['scene']] == [3.0, 4.0, 5.0]
    memory.reset()
    memory.offer('scene', 10.0, frame(10))
    memory.offer('scene', 11.0, frame(11))
    assert [s for s, _ in memory.snapshot()['scene']] == [10.0, 10.0, 11.0]   # padded with the new first frame
    memory.offer('scene', 2.0, frame(2))                                      # time went back: a new first frame
    memory.offer('scene', 3.0, frame(3))
    memory.offer('scene', 4.0, frame(4))
    memory.offer('scene', 5.0, frame(5))
    assert [s for s, _ in memory.snapshot()['scene']] == [2.0, 4.0, 5.0]


def test_visual_memory_drops_frames_from_before_the_task():
    """reset(since_s=task start): a frame of the previous scene still queued when the task arrived (stamped just
    before it) is refused, so the keyframe is the new scene's first frame; stamps far older are another clock
    (a replayed bag) and are kept."""
    memory = VisualMemory(['scene'], frames_per_camera=3, stride_s=1.0, keep_first=True)
    memory.offer('scene', 99.0, frame(1))
    memory.reset(since_s=100.0)
    assert not memory.offer('scene', 99.9, frame(1))            # the old scene, late
    assert memory.stale_dropped == 1
    assert memory.offer('scene', 100.05, frame(2))
    memory.offer('scene', 101.1, frame(3))
    memory.offer('scene', 102.2, frame(4))
    memory.offer('scene', 103.3, frame(5))
    assert [f[0, 0, 0] for _, f in memory.snapshot()['scene']] == [2, 4, 5]   # keyframe: the new scene's first
    memory.reset(since_s=100.0)
    assert memory.offer('scene', 5.0, frame(6))                 # another clock: not a late frame


def test_memory_slots_layouts():
    from pi07_common.memory_layout import memory_slots
    assert memory_slots([0], 4) == [0, 0, 0, 0]
    assert memory_slots(list(range(10)), 4) == [6, 7, 8, 9]
    assert memory_slots(list(range(10)), 4, keep_first=True) == [0, 7, 8, 9]
    assert memory_slots([0, 1], 4, keep_first=True) == [0, 0, 0, 1]
    assert memory_slots(list(range(10)), 1, keep_first=True) == [0]
