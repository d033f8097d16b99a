"""The embedded runner as a user runs it: up from a profile, Ctrl-C, every node process stopped cleanly."""
import os
import signal
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.ros]


def child_pids(pid: int) -> list[int]:
    found = []
    for stat in Path('/proc').glob('[0-9]*/stat'):
        try:
            fields = stat.read_text().rsplit(') ', 1)[-1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:  # the parent pid
            found.append(int(stat.parent.name))
    return found


def test_runner_brings_nodes_up_and_stops_them_on_sigint(spawn, tmp_path):
    runner = spawn([sys.executable, '-m', 'pi07_bringup.runner', '--profile', 'sim_arm7',
                    '--nodes', 'memory,chunk_executor', '--log-dir', str(tmp_path / 'logs'),
                    '--param', f'memory.storage_dir={tmp_path / "memory"}'], name='runner')
    assert runner.wait_for_output('all nodes active', timeout=90), runner.output()
    nodes = child_pids(runner.proc.pid)
    assert len(nodes) == 2
    runner.proc.send_signal(signal.SIGINT)
    assert runner.wait(timeout=30) == 0, runner.output()
    assert '[runner] stopped' in runner.output()
    for pid in nodes:
        assert not os.path.exists(f'/proc/{pid}') or 'Z' in Path(f'/proc/{pid}/stat').read_text().split()[2]
    assert (tmp_path / 'logs' / 'chunk_executor.log').read_text().count('configured') == 1


def test_runner_reports_a_node_that_cannot_start(spawn, tmp_path):
    runner = spawn([sys.executable, '-m', 'pi07_bringup.runner', '--profile', 'sim_arm7',
                    '--nodes', 'action_expert', '--checkpoint', f'action_expert={tmp_path / "missing"}',
                    '--log-dir', str(tmp_path / 'logs')], name='runner')
    assert runner.wait(timeout=120) == 1
    assert 'transition configure failed' in runner.output()
    assert 'cannot load checkpoint' in (tmp_path / 'logs' / 'action_expert.log').read_text()
