"""`evaluate_delay`: the RTC / sync / pause sweep over inference delays writes its report (JSON + Markdown) with one
cell per mode and delay, and each mode reaches the rollout (RTC freezes rows, the others do not)."""
import json
from pathlib import Path

from pi07_policy.evaluate_delay import compare, main, markdown

CHECKPOINT = Path(__file__).resolve().parents[2] / 'pi07_bringup' / 'checkpoints' / 'sim_gantry' / 'vla'


def test_sweep_writes_one_cell_per_mode_and_delay(tmp_path):
    out = tmp_path / 'delay'
    assert main(['--checkpoint', str(CHECKPOINT), '--embodiment', 'gantry', '--seeds', '10000', '10002',
                 '--execute-steps', '2', '--max-time-s', '1.2', '--delays', '3', '1', '--modes', 'rtc', 'sync',
                 'pause', '--out', str(out)]) == 0
    report = json.loads((out / 'delay.json').read_text())
    assert report['delays'] == [1, 3] and report['modes'] == ['rtc', 'sync', 'pause']
    cells = {(c['mode'], c['delay_steps']): c for c in report['cells']}
    assert set(cells) == {(m, d) for m in ('rtc', 'sync', 'pause') for d in (1, 3)}
    for (mode, delay), cell in cells.items():
        assert cell['summary']['episodes'] == 2 and [e['seed'] for e in cell['episodes']] == [10000, 10001]
        frozen = [e['rtc_frozen_mean'] for e in cell['episodes']]
        # RTC freezes the rows played during the delay (D + 1 from the second chunk on); sync and pause none
        assert all(f > 0 for f in frozen) if mode == 'rtc' else all(f == 0 for f in frozen), (mode, delay, frozen)
    assert set(report['comparison']) == {'rtc', 'sync', 'pause'}
    text = (out / 'delay.md').read_text()
    assert '| mode | D = 1 (100 ms) | D = 3 (300 ms) | success lost |' in text
    assert text.count('\n| rtc |') == 1 and '| pause |' in text


def test_comparison_is_the_success_lost_from_the_smallest_to_the_largest_delay():
    def cell(mode, delay, ok, n=4):
        return {'mode': mode, 'delay_steps': delay, 'summary': {
            'episodes': n, 'successes': ok, 'success_rate': ok / n, 'mean_progress': 0.5,
            'mean_time_s_success': 12.0 if ok else None}}

    cells = [cell('rtc', 1, 3), cell('rtc', 4, 3), cell('sync', 1, 4), cell('sync', 4, 1)]
    comp = compare(cells, [1, 4], ['rtc', 'sync'])
    assert comp['rtc']['success_lost'] == 0.0 and comp['sync']['success_lost'] == 0.75
    assert comp['sync']['success'] == {'D=1': 1.0, 'D=4': 0.25}
    report = {'checkpoint': 'c', 'embodiment': 'gantry', 'seeds': [10000, 10004], 'execute_steps': 2,
              'rtc_method': 'auto', 'delays': [1, 4], 'modes': ['rtc', 'sync'], 'cells': cells, 'comparison': comp}
    assert '| sync | 4 / 4, 0.50, 12.0 s | 1 / 4, 0.50, 12.0 s | +0.75 |' in markdown(report)
