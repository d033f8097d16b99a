"""Pytest set-up shared by every test of the repository.

- DDS: the test process and every child it starts run on loopback only, in a ROS domain of this session's
  own (pi07_bringup/pi07_bringup/dds_env.py is the one place these settings are decided).
- ``spawn``: start a real process (a node, a peer) with that environment; it is stopped and its output shown
  when the test ends.
"""
from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent


def _load_dds_env():
    spec = importlib.util.spec_from_file_location('pi07_dds_env', ROOT / 'pi07_bringup' / 'pi07_bringup' / 'dds_env.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_dds = _load_dds_env()
# A fresh domain for this pytest session, whatever the shell had: runs on a shared machine must not meet.
if os.environ.get('PI07_DDS_MODE') != 'system':
    os.environ.update(_dds.dds_environment(os.environ, domain_id=_dds.random_domain_id()))
_dds.check_safe(os.environ)
os.environ.setdefault('ROS_LOG_DIR', str(ROOT / 'log' / 'ros'))
os.environ.setdefault('MUJOCO_GL', 'egl')
os.environ.setdefault('LP_NUM_THREADS', '1')
os.environ.setdefault('OMP_NUM_THREADS', '1')


class Spawned:
    """A child process started by a test; its combined output is kept in a log file."""

    def __init__(self, args: list[str], log_path: Path, env: dict[str, str]):
        self.args = args
        self.log_path = log_path
        self._log = open(log_path, 'wb')
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors='replace')

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout=timeout)

    def signal(self, sig: int = signal.SIGINT) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.proc.poll() is None:
            self.signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        self._log.close()
        return self.proc.returncode

    def wait_for_output(self, text: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output():
                return True
            if self.proc.poll() is not None:
                return text in self.output()
            time.sleep(0.1)
        return False


@pytest.fixture
def spawn(tmp_path, request):
    """Start processes with the session's DDS environment: ``spawn([sys.executable, script, ...])``."""
    started: list[Spawned] = []

    def _spawn(args: list[str], env: dict[str, str] | None = None, name: str | None = None) -> Spawned:
        full_env = dict(os.environ)
        full_env.update(env or {})
        full_env.setdefault('PYTHONUNBUFFERED', '1')
        log = tmp_path / f'{name or Path(args[min(1, len(args) - 1)]).stem}-{len(started)}.log'
        child = Spawned([str(a) for a in args], log, full_env)
        started.append(child)
        return child

    yield _spawn
    for child in started:
        child.stop()
        failed = request.node.rep_call.failed if hasattr(request.node, 'rep_call') else True
        if failed:
            sys.stderr.write(f'\n----- output of {" ".join(child.args)} -----\n{child.output()[-4000:]}\n')


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, 'rep_' + report.when, report)
