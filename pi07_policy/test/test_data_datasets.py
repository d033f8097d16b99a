"""Datasets over a converted dataset: VLA samples (chunk padding + mask, subtask, subgoal, memory, language
memory), high-level samples (subtask / <done> / memory updates), and loading with DataLoader workers."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from policy_data_fixtures import INSTRUCTION, PLAN, expected_action, write_bag, write_profile
from torch.utils.data import DataLoader

from pi07_policy.data.convert import convert
from pi07_policy.data.datasets import HighLevelDataset, VLADataset, WorldModelDataset, idle_steps
from pi07_policy.data.profile_spec import load_profile_spec

STEPS = 30


@pytest.fixture(scope='module')
def dataset_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp('datasets')
    profile = load_profile_spec(write_profile(root / 'test_bot.yaml'))
    for seed in range(3):
        write_bag(root / 'bags' / f'ep_{seed}', steps=STEPS, seed=seed)
    convert([root / 'bags'], root / 'dataset', profile, val_fraction=0.0, progress=False, log=lambda *_: None)
    return root / 'dataset'


def _find(ds, episode: str, step: int) -> int:
    return next(i for i, (k, t) in enumerate(ds.items) if ds.episodes[k]['name'] == episode and t == step)


def test_vla_sample_contents(dataset_dir):
    ds = VLADataset(dataset_dir, 'train', horizon=8)
    assert len(ds) == 3 * STEPS
    s = ds[_find(ds, 'ep_1', 20)]
    np.testing.assert_allclose(s['actions'], np.stack([expected_action(t, STEPS, 1) for t in range(20, 28)]),
                               atol=1e-5)
    assert s['action_mask'].all() and s['task'] == INSTRUCTION and s['subtask'] == PLAN[1]
    assert s['language_memory'] == f'Done: {PLAN[0]}.'
    assert s['metadata'] == {'speed': 3, 'quality': 4, 'mistake': False, 'control_mode': 'joint'}
    assert set(s['images']) == {'scene', 'wrist'} and s['images']['scene'].shape == (16, 16, 3)
    assert 'subgoal_images' not in s and 'memory_images' not in s
    end = ds[_find(ds, 'ep_1', STEPS - 3)]        # 3 real actions, then the last one repeated, masked out
    assert list(end['action_mask']) == [True] * 3 + [False] * 5
    np.testing.assert_array_equal(end['actions'][3:], np.repeat(end['actions'][2:3], 5, axis=0))
    first = ds[_find(ds, 'ep_0', 3)]
    assert first['language_memory'] == '' and first['subtask'] == PLAN[0]
    # the goal state: the joint state where the current subtask ends (the next segment's first step)
    k = next(k for k, e in enumerate(ds.episodes) if e['name'] == 'ep_0')
    arr = ds.arrays(k)
    stop = next(stop for _, start, stop in ds.segments(k) if start <= 3 < stop)
    np.testing.assert_array_equal(first['goal_state'], arr.state[min(stop, len(arr) - 1)])
    assert not np.array_equal(first['goal_state'], first['state'])


def test_segment_starts_without_actions(dataset_dir):
    """The goal pretraining's samples: only the first fraction of each subtask segment, no action chunk."""
    full = VLADataset(dataset_dir, 'train', horizon=8)
    starts = VLADataset(dataset_dir, 'train', horizon=8, with_actions=False, segment_start_fraction=0.25)
    assert 0 < len(starts) < len(full) / 2
    for k, t in starts.items:
        start, stop = next((a, b) for _, a, b in full.segments(k) if a <= t < b)
        assert t < start + max(1, int((stop - start) * 0.25))
    s = starts[0]
    assert 'actions' not in s and 'action_mask' not in s and s['goal_state'].shape == s['state'].shape
    with pytest.raises(ValueError, match='segment_start_fraction'):
        VLADataset(dataset_dir, 'train', segment_start_fraction=1.5)


def test_idle_steps_are_the_inside_of_a_pause():
    """A gripper closes (step 3), the robot waits with the same command (4-6), then lifts (7): the waiting steps
    are idle, the close and the lift are not, and moving at constant speed is not a pause."""
    z = [0.30, 0.20, 0.10, 0.05, 0.05, 0.05, 0.05, 0.05, 0.15, 0.25]
    grip = [0, 0, 0, 0, 1, 1, 1, 1, 1, 1]
    states = np.array([[zi, g] for zi, g in zip(z, grip)], np.float32)
    commands = np.array([[0.2, 0], [0.1, 0], [0.05, 0], [0.05, 1], [0.05, 1], [0.05, 1], [0.05, 1], [0.15, 1],
                         [0.25, 1], [0.35, 1]], np.float32)
    assert list(np.flatnonzero(idle_steps(states, commands, 1e-3))) == [4, 5, 6]
    assert not idle_steps(np.arange(10, dtype=np.float32)[:, None] * 0.01,
                          np.arange(1, 11, dtype=np.float32)[:, None] * 0.01, 1e-3).any()


def test_dataset_leaves_out_idle_steps(dataset_dir):
    full = VLADataset(dataset_dir, 'train', horizon=8)
    k = 0
    arr = full.arrays(k)
    idle = idle_steps(arr.state, arr.actions, 1.0)     # a coarse tolerance makes the fixture's slow motion idle
    assert idle.any() and not idle.all()
    kept = VLADataset(dataset_dir, 'train', horizon=8, idle_tolerance=1.0)
    assert {t for kk, t in kept.items if kk == k} == {t for t in range(len(arr)) if not idle[t]}
    with pytest.raises(ValueError, match='idle_tolerance'):
        VLADataset(dataset_dir, 'train', idle_tolerance=-1e-3)


def test_dataset_repeats_a_family(dataset_dir):
    once = VLADataset(dataset_dir, 'train', horizon=8)
    thrice = VLADataset(dataset_dir, 'train', horizon=8, repeat={'ep_1': 3})
    per_episode = {name: sum(ds.episodes[k]['name'] == name for k, _ in ds.items) for ds in (thrice,)
                   for name in ('ep_0', 'ep_1', 'ep_2')}
    assert per_episode == {'ep_0': STEPS, 'ep_1': 3 * STEPS, 'ep_2': STEPS}
    assert set(thrice.items) == set(once.items)
    with pytest.raises(ValueError, match='repeat'):
        VLADataset(dataset_dir, 'train', repeat={'ep_1': 0})
    with pytest.raises(ValueError, match='no episode name contains'):
        VLADataset(dataset_dir, 'train', repeat={'restore_layuot': 3})


def test_subgoal_and_memory_frames(dataset_dir):
    ds = VLADataset(dataset_dir, 'train', horizon=4, subgoal_prob=1.0, subgoal_end_prob=1.0, memory_prob=1.0)
    s = ds[_find(ds, 'ep_0', 5)]
    # subgoal at the end of the current subtask = the first frame of the next one (step 15); brightness = 4 * step
    assert int(s['subgoal_images']['scene'][5, 5, 0]) == 4 * 15
    mem = s['memory_images']['wrist']
    assert len(mem) == 6 and [int(f[5, 5, 0]) for f in mem] == [0] * 6       # only the first kept frame yet
    s = ds[_find(ds, 'ep_0', 27)]
    assert [int(f[5, 5, 0]) // 4 for f in s['memory_images']['scene']] == [0, 0, 0, 0, 10, 20]
    assert int(s['subgoal_images']['scene'][5, 5, 0]) == 4 * (STEPS - 1)        # last subtask: the episode's end
    for keep_first, expected in ((True, [0, 20]), (False, [10, 20])):   # MEM keyframe: the first frame stays
        two = VLADataset(dataset_dir, 'train', horizon=4, memory_prob=1.0, memory_frames=2,
                         memory_keep_first=keep_first)
        assert [int(f[5, 5, 0]) // 4 for f in two[_find(two, 'ep_0', 27)]['memory_images']['scene']] == expected
    ahead = VLADataset(dataset_dir, 'train', horizon=4, subgoal_prob=1.0, subgoal_end_prob=0.0, subgoal_ahead_s=1.0)
    assert int(ahead[_find(ahead, 'ep_0', 2)]['subgoal_images']['scene'][5, 5, 0]) == 4 * 12
    wm = WorldModelDataset(dataset_dir, 'train')
    assert set(wm[0]) == {'images', 'subgoal_images', 'subtask', 'task', 'metadata'}


def test_subgoal_and_memory_coins_per_batch(dataset_dir):
    """extras_per_batch: every run of B samples shares the subgoal and memory coins, so a DataLoader batch either
    carries them in every sample or in none, at about the same overall rate as one coin per sample."""
    torch.manual_seed(0)
    ds = VLADataset(dataset_dir, 'train', horizon=4, subgoal_prob=0.5, memory_prob=0.5, extras_per_batch=4)
    loader = DataLoader(ds, batch_size=4, shuffle=True, num_workers=2, collate_fn=list, drop_last=True)
    batches = [b for _ in range(3) for b in loader]
    for key in ('subgoal_images', 'memory_images'):
        carried = [sum(key in s for s in b) for b in batches]
        assert set(carried) == {0, 4}, (key, carried)                      # all or none within a batch
        assert 0.2 < np.mean(carried) / 4 < 0.8
    per_sample = VLADataset(dataset_dir, 'train', horizon=4, subgoal_prob=0.5)
    carried = [sum('subgoal_images' in s for s in b) for b in DataLoader(per_sample, batch_size=4, collate_fn=list)]
    assert set(carried) - {0, 4}                                           # mixed batches with a coin per sample
    with pytest.raises(ValueError, match='extras_per_batch'):
        VLADataset(dataset_dir, 'train', extras_per_batch=-1)


def test_high_level_samples(dataset_dir):
    ds = HighLevelDataset(dataset_dir, 'train', step_stride=1, memory_repeat=1)
    samples = [ds[i] for i in range(len(ds))]
    memory = [s for s in samples if 'updated_memory' in s]
    done = [s for s in samples if s.get('task_done')]
    subtask = [s for s in samples if 'next_subtask' in s]
    assert len(memory) == 3 * 2 and len(done) == 3 * 3 and len(subtask) == 3 * (STEPS - 3)
    assert {m['updated_memory'] for m in memory} == {f'Done: {PLAN[0]}.', f'Done: {PLAN[0]}; {PLAN[1]}.'}
    late = [s for s in subtask if s['next_subtask'] == PLAN[1]]
    assert late and all(s['subtask_history'] == [PLAN[0]] and s['memory'] == f'Done: {PLAN[0]}.' for s in late)
    assert all(d['subtask_history'] == PLAN for d in done)
    # with the history lagging, a finished subtask can be missing from it; the target stays the same
    lagged = HighLevelDataset(dataset_dir, 'train', step_stride=1, memory_repeat=1, history_lag_prob=1.0)
    lagged_late = [s for s in (lagged[i] for i in range(len(lagged))) if s.get('next_subtask') == PLAN[1]]
    assert len(lagged_late) == len(late) and all(s['subtask_history'] == [] and s['memory'] == '' for s in lagged_late)
    lagged_done = [s for s in (lagged[i] for i in range(len(lagged))) if s.get('task_done')]
    assert all(d['subtask_history'] == PLAN[:-1] for d in lagged_done)
    with pytest.raises(ValueError, match='history_lag_prob'):
        HighLevelDataset(dataset_dir, 'train', history_lag_prob=1.5)


def test_loading_with_workers_matches_in_process(dataset_dir):
    from pi07_policy.models.vla.micro import micro
    from pi07_policy.models.vla.processing_vla import RobotSpec, VLAProcessor
    ds = VLADataset(dataset_dir, 'train', horizon=10)
    cfg = micro(state_dim=3, action_dim=3)
    proc = VLAProcessor.build(cfg, RobotSpec(camera_names=('scene', 'wrist'), state_dim=3, action_dim=3),
                              [ds[i] for i in range(0, len(ds), 5)], fit_fast=False)
    torch.set_num_threads(1)

    def batches(workers):
        loader = DataLoader(ds, batch_size=16, shuffle=False, num_workers=workers, collate_fn=proc.collate)
        return list(loader)

    with_workers, in_process = batches(2), batches(0)
    assert len(with_workers) == len(in_process) == int(np.ceil(len(ds) / 16))
    for a, b in zip(with_workers, in_process):
        assert a.keys() == b.keys()
        for key in a:
            torch.testing.assert_close(a[key], b[key])


def test_hindsight_return_samples(dataset_dir):
    """After an object's pick a hindsight sample asks for it back where it started: the subtask says so, the memory
    holds the episode's first frame, the goal is the state where the pick ended, on the chosen dimensions only.
    Before any pick there is nothing to return, so the sample stays as recorded."""
    ds = VLADataset(dataset_dir, 'train', horizon=8, with_actions=False, hindsight_return_prob=1.0,
                    hindsight_return_dims=(0, 1), memory_frames=1, memory_keep_first=True)
    k = next(k for k, e in enumerate(ds.episodes) if e['name'] == 'ep_0')
    pick_end = next(stop for s, _, stop in ds.segments(k) if ds.episodes[k]['subtasks'][s] == PLAN[0])
    after = ds[_find(ds, 'ep_0', pick_end + 2)]
    assert after['subtask'] == 'put the red block back where it was' and after['task'] is None
    np.testing.assert_array_equal(after['goal_state'], ds.arrays(k).state[pick_end])
    assert list(after['goal_mask']) == [True, True] + [False] * (len(after['state']) - 2)
    assert [int(f[5, 5, 0]) // 4 for f in after['memory_images']['scene']] == [0]
    before = ds[_find(ds, 'ep_0', pick_end - 1)]
    assert before['subtask'] == PLAN[0] and 'goal_mask' not in before and 'memory_images' not in before
    plain = VLADataset(dataset_dir, 'train', horizon=8, with_actions=False)
    assert plain[_find(plain, 'ep_0', pick_end + 2)]['subtask'] == PLAN[1]
    with pytest.raises(ValueError, match='with_actions'):
        VLADataset(dataset_dir, 'train', hindsight_return_prob=0.5)
    with pytest.raises(ValueError, match='state dimensions are 0'):
        VLADataset(dataset_dir, 'train', with_actions=False, hindsight_return_prob=0.5, hindsight_return_dims=(0, 99))


def test_unknown_place_samples(dataset_dir):
    """A place sample whose target is said in random letters keeps its verb and object, loses the task's words
    too, and always carries the frame where the subtask is done: the only input left that says where to go.
    Picks stay as recorded."""
    torch.manual_seed(0)
    ds = VLADataset(dataset_dir, 'train', horizon=8, unknown_place_prob=1.0, subgoal_prob=0.0)
    k = next(k for k, e in enumerate(ds.episodes) if e['name'] == 'ep_0')
    pick_end = next(stop for s, _, stop in ds.segments(k) if ds.episodes[k]['subtasks'][s] == PLAN[0])
    place_end = next(stop for s, _, stop in ds.segments(k) if ds.episodes[k]['subtasks'][s] == PLAN[1])
    seen = set()
    for _ in range(3):
        sample = ds[_find(ds, 'ep_0', pick_end + 2)]
        assert sample['subtask'].startswith('place the red block ') and 'bowl' not in sample['subtask']
        assert 'bowl' not in sample['task'] and ' the red block ' in sample['task']
        assert sample['task'] != INSTRUCTION
        assert int(sample['subgoal_images']['scene'][5, 5, 0]) // 4 == min(place_end, len(ds.arrays(k)) - 1)
        seen.add(sample['subtask'])
    assert len(seen) == 3   # new words each time, not one token the model could learn as "the target"
    pick = ds[_find(ds, 'ep_0', pick_end - 1)]
    assert pick['subtask'] == PLAN[0] and pick['task'] == INSTRUCTION and 'subgoal_images' not in pick
    with pytest.raises(ValueError, match='unknown_place_prob'):
        VLADataset(dataset_dir, 'train', unknown_place_prob=1.5)
