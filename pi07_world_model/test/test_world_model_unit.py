"""World model: shapes, prompt-component dropping, processor, determinism (fast, untrained weights)."""
from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest
import torch

from pi07_world_model.configuration_world_model import WorldModelConfig, micro, tiny
from pi07_world_model.modeling_world_model import WorldModel
from pi07_world_model.processing_world_model import WorldModelProcessor, image_to_tensor, metadata_indices
from pi07_world_model.synthetic import MovingBlocksDataset

torch.set_num_threads(1)


@pytest.fixture(scope='module')
def model_and_data():
    torch.manual_seed(0)
    cfg = micro(32)
    data = MovingBlocksDataset(8, 32)
    model = WorldModel(cfg, WorldModelProcessor.from_texts(cfg, data.texts())).eval()
    # The output conv and the adaptive-norm layers start at zero (a calm start for training), which would hide
    # the conditioning from these tests: give them small random weights, as a trained model has.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith('unet.') and not p.any():
                p.normal_(0.0, 0.05)
    return model, data


def observation(sample: dict, **overrides) -> dict:
    obs = {k: sample[k] for k in ('images', 'subtask', 'task', 'metadata')}
    obs.update(overrides)
    return obs


def test_generate_returns_one_uint8_image_per_camera(model_and_data):
    model, data = model_and_data
    out = model.generate(observation(data[0]), seed=0)
    assert set(out['subgoal_images']) == {'scene', 'wrist'}
    for img in out['subgoal_images'].values():
        assert img.dtype == np.uint8 and img.shape == (32, 32, 3)


@pytest.mark.parametrize('drop', ['subtask', 'task', 'metadata', 'all_text', 'partial_metadata', 'one_camera'])
def test_generate_runs_with_prompt_components_dropped(model_and_data, drop):
    model, data = model_and_data
    s = data[1]
    obs = {
        'subtask': observation(s, subtask=None),
        'task': observation(s, task=None),
        'metadata': observation(s, metadata=None),
        'all_text': {'images': s['images']},
        'partial_metadata': observation(s, metadata={'speed': 2}),
        'one_camera': observation(s, images={'wrist': s['images']['wrist']}),
    }[drop]
    out = model.generate(obs, seed=1)['subgoal_images']
    assert set(out) == set(obs['images'])
    full = model.generate(observation(s), seed=1)['subgoal_images']
    if drop != 'one_camera':  # the dropped component reaches the output (same noise, different conditioning)
        assert any(not np.array_equal(out[c], full[c]) for c in out)


def test_same_seed_same_output_other_seed_differs(model_and_data):
    model, data = model_and_data
    obs = observation(data[2])
    a, b = model.generate(obs, seed=7), model.generate(obs, seed=7)
    c = model.generate(obs, seed=8)
    for cam in a['subgoal_images']:
        np.testing.assert_array_equal(a['subgoal_images'][cam], b['subgoal_images'][cam])
    assert any(not np.array_equal(a['subgoal_images'][k], c['subgoal_images'][k]) for k in a['subgoal_images'])


def test_cameras_attend_to_each_other(model_and_data):
    """Changing the wrist image changes the scene subgoal: the views meet in the UNet's attention."""
    model, data = model_and_data
    s, other = data[3], data[4]
    a = model.generate(observation(s), seed=0)['subgoal_images']['scene']
    mixed = {'scene': s['images']['scene'], 'wrist': other['images']['wrist']}
    b = model.generate(observation(s, images=mixed), seed=0)['subgoal_images']['scene']
    assert not np.array_equal(a, b)


def test_inputs_of_other_sizes_and_float_images_are_resized(model_and_data):
    model, data = model_and_data
    big = {c: np.kron(im, np.ones((2, 2, 1), np.uint8)) for c, im in data[0]['images'].items()}   # 64 px
    out = model.generate(observation(data[0], images=big), seed=0)['subgoal_images']
    assert out['scene'].shape == (32, 32, 3)
    chw = torch.from_numpy(data[0]['images']['scene']).permute(2, 0, 1).float() / 255.0
    np.testing.assert_allclose(image_to_tensor(chw, 32), image_to_tensor(data[0]['images']['scene'], 32), atol=1e-6)


def test_unknown_camera_and_bad_metadata_are_clear_errors(model_and_data):
    model, data = model_and_data
    with pytest.raises(ValueError, match='unknown camera'):
        model.generate({'images': {'thermal': data[0]['images']['scene']}})
    with pytest.raises(ValueError, match='speed'):
        model.generate(observation(data[0], metadata={'speed': 9}))
    with pytest.raises(ValueError, match='images'):
        model.generate({'subtask': 'x'})


def test_metadata_indices_follow_episode_metadata_conventions():
    assert metadata_indices(None) == [0, 0, 0, 0]
    assert metadata_indices({'speed': 0, 'quality': 0, 'mistake': -1, 'control_mode': ''}) == [0, 0, 0, 0]
    assert metadata_indices({'speed': 1, 'quality': 5, 'mistake': 1, 'control_mode': 'ee'}) == [1, 5, 2, 2]
    assert metadata_indices({'mistake': False, 'control_mode': 'joint'}) == [0, 0, 1, 1]

    class Msg:  # an EpisodeMetadata-like object
        speed, quality, mistake, control_mode = 3, 0, 0, ''
    assert metadata_indices(Msg()) == [3, 0, 1, 0]


def test_training_collate_drops_each_component_sometimes(model_and_data):
    model, data = model_and_data
    samples = [data[i % len(data)] for i in range(200)]
    train = model.processor.collate(samples, train=True, rng=random.Random(0))
    plain = model.processor.collate(samples)
    assert plain['image_keep'].all() and (plain['metadata'] > 0).all()
    assert 0 < (~train['image_keep']).float().mean() < 0.3
    assert 0.1 < (train['metadata'] == 0).float().mean() < 0.5
    assert (train['text_mask'].sum(1) < plain['text_mask'].sum(1)).any()   # some prompts lost task/subtask
    assert train['text_mask'][:, 0].all()                                  # BOS always there


def test_flow_and_vae_losses_backpropagate_to_their_own_stage(model_and_data):
    model, data = model_and_data
    batch = model.processor.collate([data[i] for i in range(2)], train=True, rng=random.Random(1))
    model.train()
    try:
        for stage in ('vae', 'flow'):
            model.set_stage(stage)
            model.zero_grad(set_to_none=True)
            model(batch)['loss'].backward()
            vae_grads = [p.grad is not None for p in model.vae.parameters()]
            unet_grads = [p.grad is not None for p in model.unet.parameters()]
            assert all(vae_grads) == (stage == 'vae') and any(unet_grads) == (stage == 'flow')
    finally:
        model.zero_grad(set_to_none=True)
        model.eval()


def test_config_validation_and_sizes():
    with pytest.raises(ValueError, match='multiple'):
        WorldModelConfig(image_size=100)
    with pytest.raises(ValueError, match='camera_names'):
        WorldModelConfig(camera_names=())
    counts = WorldModel(tiny()).num_parameters()
    assert 3e6 < counts['total'] < 3e7, counts


def test_classifier_free_guidance_is_optional_and_changes_the_sample(model_and_data):
    model, data = model_and_data
    obs = observation(data[5])
    plain = model.generate(obs, seed=0)['subgoal_images']
    same = model.generate(obs, seed=0, guidance_scale=1.0)['subgoal_images']
    guided = model.generate(obs, seed=0, guidance_scale=3.0)['subgoal_images']
    assert all(np.array_equal(plain[c], same[c]) for c in plain)
    assert any(not np.array_equal(plain[c], guided[c]) for c in plain)
    # Without any prompt the guided and plain samples coincide (both branches see the same conditioning).
    bare = {'images': obs['images']}
    a, b = model.generate(bare, seed=0)['subgoal_images'], model.generate(bare, seed=0, guidance_scale=3.0)
    assert all(np.abs(a[c].astype(int) - b['subgoal_images'][c].astype(int)).max() <= 1 for c in a)


def test_held_out_evaluation_pairs_each_sample_with_a_subtask_that_differs(model_and_data):
    from pi07_world_model.evaluation_world_model import _next_different, evaluate
    model, data = model_and_data
    items = [{'subtask': s} for s in ('a', 'a', 'b', 'a')]
    differs = lambda x, y: x['subtask'] != y['subtask']
    # the next one with another text, cyclically; the sample itself where the batch holds no other
    assert [_next_different(items, i, differs) for i in range(4)] == [2, 2, 3, 2]
    assert _next_different([{'subtask': 'a'}] * 3, 1, differs) == 1
    report = evaluate(model, data, num_samples=8, batch_size=4)
    assert report['pairs_wrong_subtask'] == 8 and report['samples'] == 8

    class OneSubtask(torch.utils.data.Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            return dict(data[i], subtask='move the red block left')

    same = evaluate(model, OneSubtask(), num_samples=4, batch_size=4)
    # nothing to pair with: the "wrong" subtask is the sample's own, and the report says so
    assert same['pairs_wrong_subtask'] == 0 and same['mse_wrong_subtask'] == same['mse_generated']


def test_a_prompt_too_long_loses_the_end_of_its_task_not_its_subtask(model_and_data):
    model, _ = model_and_data
    task = 'move the red block left, then the blue block up, then the green block down and the yellow one right'
    subtask = 'move the blue block up'
    tokenizer = model.processor.tokenizer
    subtask_ids = tokenizer.encode(' Subtask: move the blue block up.').ids
    for keep in (True, False):
        cfg = dataclasses.replace(model.config, text=dataclasses.replace(model.config.text, max_tokens=20,
                                                                         keep_subtask=keep))
        ids, mask = WorldModelProcessor(cfg, tokenizer).encode_text(task, subtask)
        assert len(ids) == 20 and all(mask)                                   # too long: every slot used
        assert (ids[-len(subtask_ids):] == subtask_ids) == keep              # the old rule cut the subtask
    # short prompts are unchanged by the rule
    short = WorldModelProcessor(model.config, tokenizer).encode_text('tidy up', subtask)
    assert model.config.text.keep_subtask and short[0][1:sum(short[1])] == tokenizer.encode(
        'Task: tidy up. Subtask: move the blue block up.').ids


def test_presets_fit_the_sims_prompts():
    # the sim's longest prompts are ~31 tokens: the presets must hold them whole
    assert micro().text.max_tokens >= 40 and tiny().text.max_tokens >= 40
    assert micro().text.keep_subtask and tiny().text.keep_subtask
    with pytest.raises(ValueError, match='text.max_tokens must be >= 2'):
        dataclasses.replace(micro(), text=dataclasses.replace(micro().text, max_tokens=-1))
