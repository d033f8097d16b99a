"""The high-level decoder: overfits subtask and memory targets, decodes them back, saves/loads identically."""
import numpy as np
import pytest
import torch

from pi07_policy.checkpoint import CheckpointError
from pi07_policy.models.high_level import HighLevelModel, HighLevelPolicy, micro, tiny, train_high_level

torch.set_num_threads(1)


def samples():
    rng = np.random.default_rng(0)

    def img(c):
        x = rng.integers(0, 30, (32, 32, 3), dtype=np.uint8)
        x[:, :, c] += 200
        return x

    task = 'put the red block then the blue block in the bowl'
    return [
        {'images': {'front': img(0)}, 'task': task, 'memory': '', 'subtask_history': [],
         'metadata': {'speed': 2, 'quality': 5}, 'next_subtask': 'pick up the red block'},
        {'images': {'front': img(1)}, 'task': task, 'memory': 'The red block is in the bowl.',
         'subtask_history': ['pick up the red block', 'place it in the bowl'],
         'next_subtask': 'pick up the blue block'},
        {'images': {'front': img(2), 'wrist': img(2)}, 'task': task, 'memory': 'Both blocks are in the bowl.',
         'subtask_history': ['pick up the blue block', 'place it in the bowl'], 'task_done': True},
        {'images': {'front': img(1)}, 'task': task, 'memory': '', 'completed_subtask': 'place it in the bowl',
         'updated_memory': 'The red block is in the bowl.'},
    ]


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp('hl')
    return (*train_high_level(samples(), micro(), out, 150, batch_size=4, lr=3e-3, warmup_steps=10, log_every=5,
                              progress=False, embodiment='synthetic'), out)


def test_tiny_size():
    assert 2e6 <= sum(p.numel() for p in HighLevelModel(tiny()).parameters()) <= 6e6


def test_overfits_and_decodes_targets(trained):
    policy, result, _ = trained
    assert result.history[0]['loss'] / result.last('loss') >= 10, (result.history[0], result.history[-1])
    s = samples()
    assert policy.infer(s[0]) == {'subtask': 'pick up the red block', 'task_done': False}
    assert policy.infer(s[1]) == {'subtask': 'pick up the blue block', 'task_done': False}
    assert policy.infer(s[2])['task_done'] is True
    assert policy.update_memory(s[3]) == {'memory': 'The red block is in the bowl.'}


def test_runs_without_images_or_optional_fields(trained):
    policy, _, _ = trained
    out = policy.infer({'task': 'open the drawer'})
    assert isinstance(out['subtask'], str) and isinstance(out['task_done'], bool)


def test_checkpoint_round_trip_and_wrong_type(trained, tmp_path):
    policy, result, _ = trained
    loaded = HighLevelPolicy.from_checkpoint(result.checkpoint_dir, expected_embodiment='synthetic')
    for s in samples()[:3]:
        assert loaded.infer(s) == policy.infer(s)
    with pytest.raises(CheckpointError, match="holds a 'pi07_high_level' model, expected 'pi07_vla'"):
        from pi07_policy.models.vla import VLAPolicy
        VLAPolicy.from_checkpoint(result.checkpoint_dir)
