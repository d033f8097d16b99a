"""Checkpoint directories: round trip, and a clear error for each way a checkpoint can be wrong."""
import json
from dataclasses import dataclass

import pytest
import torch

from pi07_policy.checkpoint import CheckpointError, config_from_dict, config_to_dict, load_checkpoint, save_checkpoint
from pi07_policy.training.selftest import ToyConfig, ToyModel


@dataclass(frozen=True)
class Inner:
    sizes: tuple[int, ...] = (1, 2)
    name: str | None = None


@dataclass(frozen=True)
class Outer:
    model_type: str = 'outer'
    inner: Inner = Inner()
    pair: tuple[float, float] = (0.5, 1.5)


def test_config_round_trip_nested_dataclasses_and_tuples():
    cfg = Outer(inner=Inner(sizes=(3, 4, 5), name='x'))
    data = json.loads(json.dumps(config_to_dict(cfg)))
    assert config_from_dict(Outer, data) == cfg
    with pytest.raises(CheckpointError, match='does not know'):
        config_from_dict(Outer, {**data, 'bogus': 1})


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    model = ToyModel(ToyConfig())
    d = save_checkpoint(tmp_path / 'ckpt', model, model.config, extra_files={'tok.json': {'a': 1}},
                        norm_stats={'state': {'mean': [0.0]}}, embodiment='ur5e')
    return model, d


def test_save_load_identical_outputs(saved):
    model, d = saved
    ck = load_checkpoint(d, 'toy_regressor', config_cls=ToyConfig)
    assert ck.config == model.config and ck.embodiment == 'ur5e'
    assert ck.read_json('tok.json') == {'a': 1} and ck.norm_stats == {'state': {'mean': [0.0]}}
    other = ToyModel(ck.config)
    load_checkpoint(d, model=other)
    x = torch.randn(5, 8)
    assert torch.equal(model.net(x), other.net(x))
    assert not list(d.parent.glob('.ckpt*')), 'temporary directories left behind'


def test_wrong_model_type_and_embodiment(saved):
    _, d = saved
    with pytest.raises(CheckpointError, match="holds a 'toy_regressor' model, expected 'vla'"):
        load_checkpoint(d, 'vla')
    with pytest.raises(CheckpointError, match="embodiment 'ur5e', not 'franka'"):
        load_checkpoint(d, expected_embodiment='franka')


def test_truncated_corrupt_and_missing_files(saved, tmp_path):
    _, d = saved
    w = d / 'model.safetensors'
    data = w.read_bytes()
    w.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match='model.safetensors: truncated'):
        load_checkpoint(d)
    w.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))
    with pytest.raises(CheckpointError, match='model.safetensors: corrupt'):
        load_checkpoint(d)
    w.write_bytes(data)
    (d / 'tok.json').unlink()
    with pytest.raises(CheckpointError, match='missing file tok.json'):
        load_checkpoint(d)
    (d / 'config.json').write_text('{"model_type": "toy_reg')
    with pytest.raises(CheckpointError, match='config.json: corrupt or truncated json'):
        load_checkpoint(d)
    with pytest.raises(CheckpointError, match='does not exist'):
        load_checkpoint(tmp_path / 'nowhere')


def test_shape_mismatch_names_the_tensor(saved):
    _, d = saved
    bigger = ToyModel(ToyConfig(hidden=32))
    with pytest.raises(CheckpointError, match=r'net\.0\.weight: checkpoint \(64, 8\) vs model \(32, 8\)'):
        load_checkpoint(d, model=bigger)
