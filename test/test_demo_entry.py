"""`make demo`'s entry points: the Makefile target runs scripts/demo.sh (set-up first), and without checkpoints the
demo stops at once with a message that says how to make them."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_make_demo_runs_setup_then_the_demo():
    makefile = (ROOT / 'Makefile').read_text()
    assert 'demo:' in makefile and 'scripts/demo.sh' in makefile
    script = (ROOT / 'scripts' / 'demo.sh').read_text()
    assert script.index('bash scripts/setup.sh') < script.index('. scripts/env.sh') < script.index(
        'python -m pi07_bringup.demo')
    assert os.access(ROOT / 'scripts' / 'demo.sh', os.X_OK)


def test_missing_checkpoints_say_how_to_make_them(tmp_path):
    result = subprocess.run([sys.executable, '-m', 'pi07_bringup.demo', '--checkpoint-root', str(tmp_path / 'none'),
                             '--out', str(tmp_path / 'out'), '--summary', ''],
                            capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 2, result.stdout + result.stderr
    assert 'sim_arm7' in result.stderr and 'sim_gantry' in result.stderr
    assert str(tmp_path / 'none' / 'sim_arm7' / 'vla') in result.stderr
    assert 'scripts/train_checkpoints.sh' in result.stderr and '--checkpoint-root' in result.stderr
    assert not (tmp_path / 'out').exists(), 'nothing is started or written without checkpoints'
