"""World-model training: it overfits a small synthetic batch, resumes, and runs on two gloo processes."""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest
import torch

from pi07_world_model.configuration_world_model import micro
from pi07_world_model.modeling_world_model import WorldModel, sample_flow_time
from pi07_world_model.synthetic import MovingBlocksDataset
from pi07_world_model.training_world_model import WorldModelTrainConfig, train_world_model

torch.set_num_threads(1)


def fixed_flow_loss(model: WorldModel, batch: dict, draws: int = 8) -> float:
    """Flow loss averaged over fixed (noise, t) draws from the training distribution: comparable across models."""
    gen = torch.Generator().manual_seed(1234)
    B, V = batch['images'].shape[:2]
    C, h = model.config.vae.latent_channels, model.config.latent_size
    losses = []
    with torch.no_grad():
        for _ in range(draws):
            noise = torch.randn(B * V, C, h, h, generator=gen)
            t = sample_flow_time(B, generator=gen)
            losses.append(model.flow_loss(batch, noise=noise, t=t)['loss'].item())
    return sum(losses) / len(losses)


@pytest.mark.slow
def test_overfits_a_small_synthetic_batch(tmp_path):
    cfg = dataclasses.replace(micro(32), drop_prob_image=0.0, drop_prob_subtask=0.0, drop_prob_task=0.0,
                              drop_prob_metadata=0.0)
    data = MovingBlocksDataset(4, 32)
    tc = WorldModelTrainConfig(batch_size=4, vae_lr=3e-3, flow_lr=2e-3, stats_samples=4, progress=False,
                               plot_every=0, seed=0)
    model = train_world_model(data, cfg, tmp_path, steps=300, vae_steps=800, train_config=tc)

    batch = model.processor.collate([data[i] for i in range(4)])
    # The same model before flow training: trained VAE and latent statistics, fresh text encoder / UNet.
    torch.manual_seed(0)
    untrained = WorldModel(cfg, model.processor).eval()
    untrained.vae.load_state_dict(model.vae.state_dict())
    untrained.latent_mean.copy_(model.latent_mean)
    untrained.latent_std.copy_(model.latent_std)
    before, after = fixed_flow_loss(untrained, batch), fixed_flow_loss(model, batch)
    print(f'flow loss {before:.3f} -> {after:.4f} ({before / after:.1f}x)')
    assert before / after >= 10.0

    generated = model.sample(batch, seed=0)                     # (B, V, 3, S, S) in [-1, 1]
    target, current = batch['subgoal_images'], batch['images']
    gen_err = (generated - target).pow(2).mean().item()
    cur_err = (current - target).pow(2).mean().item()
    print(f'MSE to target: generated {gen_err:.5f}, current image {cur_err:.5f}')
    assert gen_err < 0.5 * cur_err

    # The run left its artefacts: loss plots, histories, a loadable final checkpoint.
    for stage in ('vae', 'flow'):
        assert (tmp_path / stage / 'loss.png').stat().st_size > 0
        assert (tmp_path / stage / 'history.jsonl').read_text().count('\n') >= 10
    loaded = WorldModel.from_pretrained(tmp_path / 'world_model')
    obs = {k: data[0][k] for k in ('images', 'subtask', 'task', 'metadata')}
    assert all((loaded.generate(obs, seed=5)['subgoal_images'][c] == model.generate(obs, seed=5)['subgoal_images'][c])
               .all() for c in cfg.camera_names)


def test_two_stage_training_resumes_where_it_stopped(tmp_path):
    cfg = micro(16)
    data = MovingBlocksDataset(8, 16)
    tc = WorldModelTrainConfig(batch_size=4, stats_samples=8, progress=False, plot_every=0, log_every=1)
    train_world_model(data, cfg, tmp_path, steps=3, vae_steps=2, train_config=tc)
    train_world_model(data, cfg, tmp_path, steps=5, vae_steps=2, train_config=tc, resume=True)
    flow_steps = [json.loads(line)['step'] for line in (tmp_path / 'flow' / 'history.jsonl').read_text().splitlines()]
    vae_steps = [json.loads(line)['step'] for line in (tmp_path / 'vae' / 'history.jsonl').read_text().splitlines()]
    assert flow_steps == [1, 2, 3, 4, 5]     # continued at step 4, not from scratch
    assert vae_steps == [1, 2]               # the VAE stage was not run again
    state = json.loads((tmp_path / 'flow' / 'checkpoint' / 'trainer_state.json').read_text())
    assert state['step'] == 5


@pytest.mark.slow
def test_two_process_distributed_training(tmp_path):
    proc = subprocess.run([sys.executable, '-m', 'pi07_world_model.training_world_model', '--spawn', '2',
                           '--out', str(tmp_path), '--config', 'micro', '--image-size', '16', '--vae-steps', '3',
                           '--steps', '4', '--samples', '16', '--batch-size', '4'],
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f'rank{r}.json').read_text()) for r in (0, 1)]
    assert [r['world_size'] for r in ranks] == [2, 2]
    # DDP kept the replicas identical (gradients averaged over both ranks' shards).
    assert ranks[0]['weight_checksum'] == pytest.approx(ranks[1]['weight_checksum'], rel=1e-6)
    assert WorldModel.from_pretrained(tmp_path / 'world_model').num_parameters()['total'] > 0


class PutBackSamples(torch.utils.data.Dataset):
    """"Put the red block back where it was": the current image is the same in every sample (the block on a tray
    spot), only the keyframe (the task's first frame) shows where it stood, and the subgoal shows it there."""

    SIZE, BLOCK = 32, 6
    ORIGINS = ((2, 2), (2, 24), (24, 2), (24, 24))

    def __len__(self) -> int:
        return len(self.ORIGINS)

    def __getitem__(self, i: int) -> dict:
        from pi07_world_model.synthetic import render
        at = lambda rc: {cam: render({'red': rc}, cam, self.SIZE, self.BLOCK) for cam in ('scene', 'wrist')}
        return {'images': at((13, 13)), 'subgoal_images': at(self.ORIGINS[i]), 'keyframe_images': at(self.ORIGINS[i]),
                'subtask': 'put the red block back where it was', 'task': None, 'metadata': None}

    def texts(self) -> list[str]:
        return ['put the red block back where it was']


@pytest.mark.slow
def test_a_world_model_with_keyframes_draws_the_place_only_the_keyframe_shows(tmp_path):
    cfg = dataclasses.replace(micro(32), reads_keyframe=True, drop_prob_image=0.0, drop_prob_subtask=0.0,
                              drop_prob_task=0.0, drop_prob_metadata=0.0, drop_prob_keyframe=0.0)
    data = PutBackSamples()
    tc = WorldModelTrainConfig(batch_size=4, vae_lr=3e-3, flow_lr=2e-3, stats_samples=4, progress=False,
                               plot_every=0, seed=0)
    model = train_world_model(data, cfg, tmp_path, steps=150, vae_steps=400, train_config=tc)
    items = [data[i] for i in range(len(data))]
    batch = model.processor.collate(items)
    target = batch['subgoal_images']
    error = lambda images: (images - target).pow(2).mean().item()
    right = error(model.sample(batch, seed=0))
    # Each sample with the next one's keyframe: the text and the current image are unchanged, so only a model that
    # reads the keyframe can be led elsewhere by it.
    swapped = model.processor.collate([dict(s, keyframe_images=items[(i + 1) % 4]['keyframe_images'])
                                       for i, s in enumerate(items)])
    wrong = error(model.sample(swapped, seed=0))
    current = error(batch['images'])
    print(f'MSE to the subgoal: right keyframe {right:.4f}, another sample\'s {wrong:.4f}, current image {current:.4f}')
    assert right < 0.5 * current and right < 0.5 * wrong
    # The keyframe travels through the dict-in/dict-out API and the checkpoint.
    loaded = WorldModel.from_pretrained(tmp_path / 'world_model')
    assert loaded.config.reads_keyframe
    obs = {k: items[1][k] for k in ('images', 'subtask', 'keyframe_images')}
    drawn = loaded.generate(obs, seed=0)['subgoal_images']['scene'].astype(float)
    truth = items[1]['subgoal_images']['scene'].astype(float)
    other = items[2]['subgoal_images']['scene'].astype(float)
    assert ((drawn - truth) ** 2).mean() < ((drawn - other) ** 2).mean()
