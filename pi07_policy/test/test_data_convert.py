"""Converter: good bags become aligned episodes; broken bags (missing topic, truncated file, too short, not a bag)
are reported with the reason and skipped without stopping the conversion."""
from __future__ import annotations

import json

import numpy as np
import pytest
from policy_data_fixtures import INSTRUCTION, PLAN, expected_action, write_bag, write_profile

from pi07_policy.data.convert import convert, main
from pi07_policy.data.format import open_episode, read_index, read_norm_stats
from pi07_policy.data.profile_spec import load_profile_spec


@pytest.fixture(scope='module')
def converted(tmp_path_factory):
    root = tmp_path_factory.mktemp('convert')
    profile = load_profile_spec(write_profile(root / 'test_bot.yaml'))
    bags = root / 'bags'
    for seed in range(4):
        write_bag(bags / f'good_{seed}', steps=30, seed=seed)
    write_bag(bags / 'no_command', skip_topics=('/forward_position_controller/commands',))
    write_bag(bags / 'truncated', truncate=True)
    write_bag(bags / 'short', steps=4)
    (bags / 'not_a_bag').mkdir()
    (bags / 'not_a_bag' / 'metadata.yaml').write_text('nothing: here\n')
    lines = []
    index = convert([bags], root / 'dataset', profile, val_fraction=0.25, progress=False, log=lines.append)
    return root, profile, index, lines


def test_good_bags_converted_broken_ones_skipped_with_reason(converted):
    root, _, index, lines = converted
    names = sorted(e['name'] for e in index['episodes'])
    assert names == [f'good_{s}' for s in range(4)]
    reasons = {s['bag'].rsplit('/', 1)[-1]: s['reason'] for s in index['skipped']}
    assert set(reasons) == {'no_command', 'truncated', 'short', 'not_a_bag'}
    assert 'missing topic /forward_position_controller/commands' in reasons['no_command']
    assert 'truncated' in reasons['truncated']
    assert 'too short' in reasons['short']
    assert 'no .mcap' in reasons['not_a_bag']
    assert any('skipped 4' in line for line in lines)
    on_disk = read_index(root / 'dataset')
    assert on_disk['skipped'] == index['skipped']
    assert sorted(e['split'] for e in on_disk['episodes']) == ['train', 'train', 'train', 'val']


def test_streams_aligned_at_control_rate(converted):
    root, profile, index, _ = converted
    entry = next(e for e in index['episodes'] if e['name'] == 'good_2')
    ep = open_episode(root / 'dataset', 'good_2', profile.camera_names)
    assert len(ep) == entry['length'] == 30
    np.testing.assert_allclose(np.diff(ep.time), 0.1, atol=1e-6)
    expected = np.stack([expected_action(t, 30, 2) for t in range(30)])
    np.testing.assert_allclose(ep.actions, expected, atol=1e-5)            # command issued after frame t
    np.testing.assert_allclose(ep.actions - ep.state, np.broadcast_to(                    # state at t
        (0.1 * (np.arange(30) + 1) / 30)[:, None], (30, 3)), atol=1e-5)
    assert ep.images['scene'].shape == (30, 16, 16, 3) and ep.images['scene'].dtype == np.uint8
    assert [int(ep.images['scene'][t, 5, 5, 0]) for t in (0, 7)] == [0, 28]
    assert tuple(ep.images['wrist'][0, 0, 0]) == (2, 1, 7)
    assert list(ep.subtask_index[:15]) == [0] * 15 and list(ep.subtask_index[15:]) == [1] * 15
    assert list(ep.progress[[0, 15, 29]]) == [0, 1, 2]
    assert entry['subtasks'] == PLAN and entry['plan'] == PLAN and entry['instruction'] == INSTRUCTION
    assert entry['metadata'] == {'speed': 3, 'quality': 4, 'mistake': False, 'control_mode': 'joint'}


def test_norm_stats_and_rerun_reuses_episodes(converted, tmp_path):
    root, profile, index, _ = converted
    stats = read_norm_stats(root / 'dataset')
    assert len(stats['actions']['mean']) == 3 and len(stats['state']['q99']) == 3
    # the command-line entry converts again into a fresh directory; a second run reuses converted episodes
    args = [str(root / 'bags' / 'good_0'), str(root / 'bags' / 'good_1'), '-o', str(tmp_path / 'ds'),
            '--profile', profile.path, '--no-progress', '--val-fraction', '0']
    assert main(args) == 0
    first = json.loads((tmp_path / 'ds' / 'index.json').read_text())
    assert main(args) == 0
    again = json.loads((tmp_path / 'ds' / 'index.json').read_text())
    assert [e['name'] for e in again['episodes']] == [e['name'] for e in first['episodes']] == ['good_0', 'good_1']
    assert all(e['split'] == 'train' for e in again['episodes'])
