"""The shared training loop: it learns, writes plots and checkpoints, resumes exactly, and runs on 2 ranks."""
import json
import subprocess
import sys

import pytest
import torch

from pi07_policy.checkpoint import load_checkpoint
from pi07_policy.training import TrainConfig, lr_at, train
from pi07_policy.training.selftest import ToyConfig, ToyDataset, ToyModel

torch.set_num_threads(1)


def test_lr_schedule_warmup_then_cosine():
    cfg = TrainConfig(steps=100, lr=1.0, warmup_steps=10, min_lr_ratio=0.1)
    assert lr_at(0, cfg) == pytest.approx(0.1) and lr_at(9, cfg) == pytest.approx(1.0)
    assert lr_at(100, cfg) == pytest.approx(0.1) and lr_at(55, cfg) == pytest.approx(0.55)


def test_loop_overfits_plots_and_checkpoints(tmp_path):
    model = ToyModel(ToyConfig())
    cfg = TrainConfig(steps=150, batch_size=16, lr=3e-3, warmup_steps=5, log_every=5, plot_every=50,
                      progress=False)
    result = train(model, ToyDataset(), cfg, tmp_path)
    assert result.first() / result.last() >= 10, (result.first(), result.last())
    assert (tmp_path / 'loss.png').stat().st_size > 1000
    assert len((tmp_path / 'history.jsonl').read_text().splitlines()) == 30
    ck = load_checkpoint(result.checkpoint_dir, 'toy_regressor')
    assert ck.has('optimizer.safetensors') and ck.read_json('trainer_state.json')['step'] == 150


def test_resume_continues_exactly(tmp_path):
    cfg = TrainConfig(steps=20, batch_size=64, lr=1e-2, warmup_steps=0, min_lr_ratio=1.0, log_every=1, progress=False)
    full = ToyModel(ToyConfig())
    init = {k: v.clone() for k, v in full.state_dict().items()}
    train(full, ToyDataset(), cfg, tmp_path / 'full')
    # The same run stopped at step 10 (constant LR, so its schedule matches), then resumed in a fresh model.
    half = ToyModel(ToyConfig())
    half.load_state_dict(init)
    train(half, ToyDataset(), TrainConfig(**{**cfg.__dict__, 'steps': 10}), tmp_path / 'half')
    resumed = ToyModel(ToyConfig(hidden=64))
    res = train(resumed, ToyDataset(), cfg, tmp_path / 'resumed', resume_from=tmp_path / 'half' / 'checkpoint')
    assert res.step == 20 and len(res.history) == 20
    for (k, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), k


@pytest.mark.slow
def test_two_process_distributed_training(tmp_path):
    """Two gloo ranks (torch.multiprocessing), DDP keeps the replicas identical, rank 0 writes the checkpoint."""
    out = tmp_path / 'ddp'
    proc = subprocess.run([sys.executable, '-m', 'pi07_policy.training.selftest', '--spawn', '2', '--out', str(out),
                           '--steps', '6'], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((out / f'rank{r}.json').read_text()) for r in (0, 1)]
    assert all(r['world_size'] == 2 and r['step'] == 6 for r in ranks)
    assert ranks[0]['weight_checksum'] == pytest.approx(ranks[1]['weight_checksum'], abs=1e-9)
    assert load_checkpoint(out / 'checkpoint', 'toy_regressor').read_json('trainer_state.json')['step'] == 6


def test_lr_scales_slow_the_named_parameters_only(tmp_path):
    """TrainConfig.lr_scales: the first matching name prefix sets a parameter group's LR multiplier; a scale of 0
    freezes those parameters while the rest learn, and the plain layout keeps its two groups."""
    from pi07_policy.training import make_optimizer
    model = ToyModel(ToyConfig())
    names = [n for n, _ in model.named_parameters()]
    first_layer = names[0].rsplit('.', 1)[0]
    assert len(make_optimizer(model, TrainConfig()).param_groups) == 2
    cfg = TrainConfig(steps=5, batch_size=16, lr=1e-2, warmup_steps=0, progress=False,
                      lr_scales=((first_layer, 0.0),))
    opt = make_optimizer(model, cfg)
    assert sorted(g['lr_scale'] for g in opt.param_groups) == [0.0, 0.0, 1.0, 1.0]
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    train(model, ToyDataset(), cfg, None)
    for n, p in model.named_parameters():
        assert torch.equal(p, before[n]) == n.startswith(first_layer), n
