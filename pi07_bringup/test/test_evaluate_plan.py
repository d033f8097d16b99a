"""The evaluation's plan, metrics and report, without ROS: which configurations run (and share episodes), how
path smoothness is measured, what the table and the comparisons say."""
import json
import math

import numpy as np
import pytest

from pi07_bringup.evaluate import (
    ALL_NODES,
    Episode,
    MissingCheckpoints,
    check_checkpoints,
    comparisons,
    markdown_table,
    path_metrics,
    run_order,
    select_configs,
    summarize,
    with_families,
    write_report,
)


def test_configuration_sets_and_stack_starts():
    configs = select_configs('all')
    names = [c.name for c in configs]
    assert names[:5] == ['scripted_expert', 'language_only', 'metadata', 'subgoals', 'memory']
    assert {f'{m}_d{d}' for m in ('rtc', 'sync', 'pause') for d in (0, 100, 200, 300)} <= set(names)
    assert {'steer_q5', 'steer_q2'} <= set(names)
    # One stack start per node selection and driver, smallest first: the scripted expert's sim, then the policy
    # stacks; the language-only one has no world model or memory.
    plan = run_order(configs)
    assert [key for key, _ in plan][0] == ('sim', 'driver:scripted')
    assert [len(key) for key, _ in plan[1:]] == [4, 5, 6]
    assert 'world_model' not in plan[1][0] and 'memory' not in plan[2][0] and plan[3][0] == ALL_NODES
    assert plan[0][1][0].expert_parameters() == {}
    language = next(c for c in configs if c.name == 'language_only').expert_parameters()
    assert not (language['use_metadata'] or language['use_subgoals'] or language['use_visual_memory'])
    sync = next(c for c in configs if c.name == 'sync_d300').expert_parameters()
    assert sync['mode'] == 'sync' and sync['injected_delay_s'] == pytest.approx(0.3)
    assert sync['execution_horizon'] == 8   # set on every row, so a pause row's rows per chunk does not leak
    assert sync['gripper_confirm_lead_s'] == 0.0   # set on every row, so a confirm row's lead does not leak
    confirm = next(c for c in configs if c.name == 'sync_confirm_d300').expert_parameters()
    assert confirm['mode'] == 'sync' and confirm['gripper_confirm_lead_s'] == 0.3
    assert next(c for c in configs if c.name == 'rtc_confirm_d0').expert_parameters()['mode'] == 'rtc'
    pause = next(c for c in configs if c.name == 'pause_d100').expert_parameters()
    assert pause['mode'] == 'pause' and pause['execution_horizon'] == 5 and pause['injected_delay_s'] == 0.1
    q2 = next(c for c in configs if c.name == 'steer_q2').expert_parameters()
    assert q2['metadata_quality'] == 2 and q2['use_metadata']
    # Identical settings run once: the full stack at 0 ms RTC delay with quality 5 is all three of these.
    by = {c.name: c for c in configs}
    assert by['memory'].run_key('ordered_place') == by['rtc_d0'].run_key('ordered_place') == \
        by['steer_q5'].run_key('ordered_place')
    assert by['steer_q2'].run_key('ordered_place') != by['steer_q5'].run_key('ordered_place')
    assert 'restore_layout' in by['memory'].families and 'restore_layout' in by['subgoals'].families


def test_config_selection_errors():
    assert [c.name for c in select_configs('steering,steer_q2')] == ['steer_q5', 'steer_q2']
    with pytest.raises(ValueError, match='unknown configuration'):
        select_configs('language_only,nonsense')
    with pytest.raises(ValueError, match='world_model'):
        select_configs('subgoals', available_nodes=['sim', 'high_level_policy', 'action_expert', 'chunk_executor'])


def test_configurations_moved_to_another_family():
    configs = with_families(select_configs('metadata,subgoals'), ['middle_place'])
    assert [(c.name, c.families) for c in configs] == [('metadata', ('middle_place',)), ('subgoals', ('middle_place',))]
    with pytest.raises(ValueError, match='middle_place'):  # the message names the known families
        with_families(configs, ['center_place'])
    # the prompt ladder is compared on whatever family the rows ran
    rows = [{'config': name, 'family': 'middle_place', 'summary': summarize(
        [_episode(name, 10000, ok, 2 if ok else 1, 20.0, [50.0], 1.0)])} for name, ok in (('metadata', False),
                                                                                      ('subgoals', True))]
    assert comparisons(rows)['prompt'] == {'subgoals - metadata success (middle_place)': 1.0}


def test_path_metrics_rank_smooth_below_wobbly():
    t = np.arange(0, 10, 0.02)
    smooth = np.stack([0.05 * t, np.sin(0.3 * t)], axis=1)
    wobbly = smooth + 0.01 * np.stack([np.sin(7 * t), np.cos(9 * t)], axis=1)
    jerk_smooth, length_smooth = path_metrics(t, smooth)
    jerk_wobbly, length_wobbly = path_metrics(t, wobbly)
    assert jerk_wobbly > 5 * jerk_smooth and length_wobbly > length_smooth
    line = np.stack([t, 2 * t], axis=1)
    jerk_line, length_line = path_metrics(t, line)
    assert jerk_line < 1e-6 and length_line == pytest.approx(math.hypot(1, 2) * 9.98, rel=0.02)
    assert math.isnan(path_metrics(t[:3], line[:3])[0])


def _episode(config, seed, success, done, time_s, latency, jerk):
    return Episode(config, 'ordered_place', seed, state='succeeded' if success else 'failed', success=success,
                   subtasks_done=done, subtasks_total=4, progress=done / 4, episode_time_s=time_s, wall_s=time_s,
                   chunks=10 * int(time_s), latency_ms=latency, jerk_rms=jerk)


def test_summary_comparisons_and_report_files(tmp_path):
    q5 = [_episode('steer_q5', 10000, True, 4, 12.0, [40.0, 60.0], 1.0),
          _episode('steer_q5', 10001, True, 4, 14.0, [50.0], 1.2)]
    q2 = [_episode('steer_q2', 10000, False, 2, 30.0, [45.0], 3.0),
          _episode('steer_q2', 10001, True, 4, 20.0, [55.0], 2.0)]
    s5, s2 = summarize(q5), summarize(q2)
    assert s5['success_rate'] == 1.0 and s2['success_rate'] == 0.5 and s2['progress'] == pytest.approx(0.75)
    assert s5['latency_p50_ms'] == pytest.approx(50.0) and s5['success_time_s'] == pytest.approx(13.0)
    assert s5['chunk_rate_hz'] == pytest.approx(10.0)
    rows = [{'config': 'steer_q5', 'family': 'ordered_place', 'group': 'steering', 'description': 'q5',
             'summary': s5, 'episodes': [e.record() for e in q5]},
            {'config': 'steer_q2', 'family': 'ordered_place', 'group': 'steering', 'description': 'q2',
             'summary': s2, 'episodes': [e.record() for e in q2]},
            {'config': 'sync_d300', 'family': 'ordered_place', 'group': 'delay', 'description': 'sync',
             'summary': summarize([_episode('sync_d300', 10000, False, 0, 30.0, [], float('nan'))]),
             'episodes': []}]
    comp = comparisons(rows)
    assert comp['steering']['q5 - q2 success_rate'] == pytest.approx(0.5)
    assert comp['steering']['q5 - q2 episode_time_s'] == pytest.approx(-12.0)
    assert comp['steering']["in the label's direction"] == ['episode_time_s', 'jerk_rms', 'progress', 'success_rate']
    assert comp['delay']['sync']['300 ms'] == 0.0 and comp['delay']['sync']['0 ms'] is None
    assert 'sync' not in comp['delay_jerk']  # no finite jerk in any sync row: no curve
    report = {'profile': 'sim_arm7', 'embodiment': 'arm7', 'seeds': [10000, 10001], 'duration_s': 90.0,
              'checkpoint_note': 'test', 'rows': rows, 'comparisons': comp}
    json_path, md_path = write_report(report, tmp_path)
    loaded = json.loads(json_path.read_text())  # valid JSON: NaN became null
    assert loaded['rows'][2]['summary']['latency_p50_ms'] is None
    md = md_path.read_text()
    assert md == markdown_table(report)
    assert '| steer_q5 | ordered_place | 2 | 100% | 1.00 |' in md and '| sync | – | – | – | 0% |' in md
    assert 'Steering' in md


def test_missing_checkpoints_are_named(tmp_path):
    (tmp_path / 'vla').mkdir()
    (tmp_path / 'vla' / 'config.json').write_text('{}')
    paths = {'action_expert': str(tmp_path / 'vla'), 'world_model': str(tmp_path / 'wm')}
    check_checkpoints(paths, ['sim', 'action_expert'])
    with pytest.raises(MissingCheckpoints) as err:
        check_checkpoints(paths, ['action_expert', 'world_model', 'high_level_policy'])
    assert 'world_model' in str(err.value) and 'high_level_policy: (none given)' in str(err.value)


def test_a_stack_that_fails_still_gives_a_report(tmp_path, monkeypatch):
    import pi07_bringup.evaluate as evaluate

    for sub in ('vla', 'high_level', 'world_model'):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / 'config.json').write_text('{}')

    class NoProbe:
        frames = []

        def __init__(self, *args):
            pass

        def stop(self):
            pass

    def refuse(self, nodes):
        raise RuntimeError('action_expert: transition configure failed')

    monkeypatch.setattr(evaluate, 'EpisodeProbe', NoProbe)
    monkeypatch.setattr(evaluate.Evaluator, '_start_stack', refuse)
    options = evaluate.EvalOptions(checkpoints=evaluate.checkpoints_in(str(tmp_path)), configs='language_only',
                                   seeds=2, out=str(tmp_path / 'out'))
    lines = []
    report = evaluate.Evaluator(options, log=lines.append).run()
    assert 'configure failed' in report['aborted'] and any('aborted' in line for line in lines)
    assert report['rows'][0]['summary']['episodes'] == 0
    assert '**Aborted**' in markdown_table(report)
