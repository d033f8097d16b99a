"""World-model checkpoints: save/load gives identical outputs; broken checkpoints fail at once and say why."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from pi07_policy.checkpoint import CheckpointError
from pi07_world_model.configuration_world_model import micro
from pi07_world_model.modeling_world_model import WorldModel
from pi07_world_model.processing_world_model import TOKENIZER_FILE, WorldModelProcessor
from pi07_world_model.synthetic import MovingBlocksDataset

torch.set_num_threads(1)


@pytest.fixture(scope='module')
def saved(tmp_path_factory):
    torch.manual_seed(0)
    cfg = micro(32)
    data = MovingBlocksDataset(2, 32)
    model = WorldModel(cfg, WorldModelProcessor.from_texts(cfg, data.texts()))
    with torch.no_grad():   # non-trivial weights everywhere (zero-initialised layers included), and stats
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
        model.latent_mean.uniform_(-0.5, 0.5)
        model.latent_std.uniform_(0.5, 2.0)
    directory = tmp_path_factory.mktemp('wm') / 'ckpt'
    model.eval().save_pretrained(directory)
    obs = {k: data[0][k] for k in ('images', 'subtask', 'task', 'metadata')}
    return model, directory, obs


def broken_copy(saved_dir, tmp_path):
    target = tmp_path / 'broken'
    shutil.copytree(saved_dir, target)
    return target


def test_save_load_gives_identical_outputs(saved):
    model, directory, obs = saved
    loaded = WorldModel.from_pretrained(directory)
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)
    out_a, out_b = model.generate(obs, seed=3), loaded.generate(obs, seed=3)
    for cam in out_a['subgoal_images']:
        np.testing.assert_array_equal(out_a['subgoal_images'][cam], out_b['subgoal_images'][cam])
    assert loaded.processor.encode_text('tidy', 'move the red block left') == \
        model.processor.encode_text('tidy', 'move the red block left')
    stats = json.loads((directory / 'norm_stats.json').read_text())
    np.testing.assert_allclose(stats['latent_std'], model.latent_std.numpy(), rtol=1e-6)


def test_truncated_weights_are_a_clear_error(saved, tmp_path):
    d = broken_copy(saved[1], tmp_path)
    data = (d / 'model.safetensors').read_bytes()
    (d / 'model.safetensors').write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match='truncated'):
        WorldModel.from_pretrained(d)


def test_corrupt_tokenizer_is_a_clear_error(saved, tmp_path):
    d = broken_copy(saved[1], tmp_path)
    text = (d / TOKENIZER_FILE).read_text()
    (d / TOKENIZER_FILE).write_text(text.replace('Task', 'Tusk', 1))   # same size, other content
    with pytest.raises(CheckpointError, match='sha256'):
        WorldModel.from_pretrained(d)


def test_missing_file_is_a_clear_error(saved, tmp_path):
    d = broken_copy(saved[1], tmp_path)
    (d / TOKENIZER_FILE).unlink()
    with pytest.raises(CheckpointError, match='missing file text_tokenizer.json'):
        WorldModel.from_pretrained(d)


def test_config_that_does_not_match_the_weights_is_a_clear_error(saved, tmp_path):
    d = broken_copy(saved[1], tmp_path)
    meta = json.loads((d / 'config.json').read_text())
    meta['config']['unet']['channels'] = [32, 64]
    (d / 'config.json').write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match='shape mismatch'):
        WorldModel.from_pretrained(d)


def test_invalid_config_and_other_model_types_are_clear_errors(saved, tmp_path):
    d = broken_copy(saved[1], tmp_path)
    meta = json.loads((d / 'config.json').read_text())
    meta['config']['image_size'] = 30
    (d / 'config.json').write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match='invalid world-model config.*multiple'):
        WorldModel.from_pretrained(d)
    meta['model_type'] = 'pi07_vla'
    (d / 'config.json').write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="holds a 'pi07_vla' model"):
        WorldModel.from_pretrained(d)
    (d / 'config.json').write_text('{"model_type": "pi07_world')
    with pytest.raises(CheckpointError, match='corrupt or truncated json'):
        WorldModel.from_pretrained(d)
    with pytest.raises(CheckpointError, match='does not exist'):
        WorldModel.from_pretrained(tmp_path / 'nowhere')


def test_config_of_an_older_checkpoint_loads_with_the_behaviour_it_was_trained_with(saved, tmp_path):
    """Options added later default to the old behaviour: a config.json without them means 'off'."""
    model, directory, obs = saved
    assert model.config.unet.position_embedding
    d = broken_copy(directory, tmp_path)
    meta = json.loads((d / 'config.json').read_text())
    del meta['config']['unet']['position_embedding']
    (d / 'config.json').write_text(json.dumps(meta))
    old = WorldModel.from_pretrained(d)
    assert not old.config.unet.position_embedding
    a, b = model.generate(obs, seed=0)['subgoal_images'], old.generate(obs, seed=0)['subgoal_images']
    assert any(not np.array_equal(a[c], b[c]) for c in a)
