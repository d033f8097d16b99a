"""A short closed-loop evaluation through the real stack (processes, DDS) with tiny random checkpoints: the
report's shape, live parameters reaching the action expert, episodes reset between seeds, the success path (the
sim's scripted expert as the reference row), and what the demo writes from the same run. Behaviour, not skill:
random weights never finish a task, so policy episodes are cut at 5 s."""
import json
from dataclasses import replace

import pytest

pytestmark = [pytest.mark.ros, pytest.mark.slow]


@pytest.fixture(scope='module')
def evaluation(tmp_path_factory):
    import torch
    from stack_checkpoints import make_checkpoints

    from pi07_bringup.evaluate import EvalOptions, Evaluator, write_report
    from pi07_bringup.profile import load_profile

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp('evaluate')
    checkpoints = make_checkpoints(load_profile('sim_arm7'), out / 'checkpoints')
    lines = []
    options = EvalOptions(profile='sim_arm7', checkpoints=checkpoints, configs='scripted_expert,memory,sync_d200',
                          seeds=1, out=str(out / 'eval'), max_episode_s=5.0, gif_episodes=1, checkpoint_note='random')
    evaluator = Evaluator(options, log=lines.append)
    evaluator.configs = [replace(c, families=('ordered_place',)) for c in evaluator.configs]
    report = evaluator.run()
    write_report(report, out / 'eval')
    return report, evaluator, out, lines


def test_report_shape(evaluation):
    report, evaluator, out, lines = evaluation
    assert [(r['config'], r['family']) for r in report['rows']] == [
        ('scripted_expert', 'ordered_place'), ('memory', 'ordered_place'), ('sync_d200', 'ordered_place')]
    assert report['seeds'] == [10000] and report['embodiment'] == 'arm7'
    # The success path, end to end: the sim's scripted expert drives the same sim and the evaluator sees it succeed.
    (reference,) = report['rows'][0]['episodes']
    assert reference['state'] == 'succeeded' and reference['success'] and reference['subtasks_done'] == 4, reference
    assert reference['progress'] == 1.0 and 4.0 < reference['episode_time_s'] < 30.0
    assert [d for _, d in reference['timeline']] == [0, 1, 2, 3, 4], reference['timeline']
    assert report['rows'][0]['summary']['success_rate'] == 1.0
    assert len(report['checkpoints']['action_expert']['weights_sha256']) == 16
    for row in report['rows'][1:]:
        summary, (episode,) = row['summary'], row['episodes']
        assert set(summary) >= {'episodes', 'success_rate', 'progress', 'episode_time_s', 'latency_p50_ms',
                                'latency_p95_ms', 'chunk_rate_hz', 'jerk_rms'}
        assert summary['episodes'] == 1 and summary['errors'] == 0, episode
        # Cut at 5 s of simulated time (random weights do not finish), after the robot moved under the stack.
        assert episode['state'] == 'cut' and 5.0 <= episode['episode_time_s'] < 8.0, episode
        assert episode['subtasks_total'] == 4 and episode['task_id'].startswith('arm7/ordered_place/10000/')
        assert episode['chunks'] >= 3 and episode['path_length'] > 0.01, episode
        assert episode['timeline'] and episode['timeline'][0][1] == 0, episode
    memory, sync = (r['episodes'][0] for r in report['rows'][1:])
    assert memory['task_id'] != sync['task_id'], 'each episode is a new reset'
    # The live parameters reached the action expert: 200 ms injected delay shows in the measured latency.
    assert sync['latency_p50_ms'] >= 200 > memory['latency_p50_ms'], (memory, sync)
    # RTC chunks keep rows of the one before; sync chunks start from scratch
    assert sync['frozen_prefix_mean'] == 0 < memory['frozen_prefix_mean'], (memory, sync)
    assert report['rows'][2]['action_expert']['mode'] == 'sync'
    assert report['comparisons']['delay']['sync']['200 ms'] == 0.0
    md = (out / 'eval' / 'eval.md').read_text()
    assert '| memory | ordered_place | 1 | 0% |' in md and '| sync_d200 |' in md
    assert json.loads((out / 'eval' / 'eval.json').read_text())['rows'][0]['episodes'][0]['seed'] == 10000
    assert any('3/3 sync_d200' in line for line in lines), lines


def test_demo_outputs(evaluation):
    import imageio.v2 as imageio

    from pi07_bringup.demo import write_outputs

    report, evaluator, out, _ = evaluation
    assert len(evaluator.frames) >= 10
    latency = [v for e in evaluator.episodes for v in e.latency_ms]
    summary = write_outputs({'sim_arm7': (report, latency, evaluator.frames)}, out / 'demo',
                            out / 'demo_summary.json', started=0.0, note='random')
    for name in ('sim_arm7.gif', 'results.png', 'latency.png', 'progress.png', 'demo_summary.json'):
        assert (out / 'demo' / name).stat().st_size > 1000, name
    frames = imageio.mimread(out / 'demo' / 'sim_arm7.gif')
    assert len(frames) >= 10 and frames[0].shape[:2] == (192, 192)  # identical frames may be merged
    saved = json.loads((out / 'demo_summary.json').read_text())
    figures = saved['profiles']['sim_arm7']  # the demo reports the first row: the reference here
    assert figures['episodes'] == 1 and figures['success_rate'] == 1.0
    assert '| sim_arm7 | arm7 | 1 | 100% |' in saved['table'] == summary['table']
