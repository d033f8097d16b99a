"""The image encoders behind the VLA's vision interface: token grid shapes (current frames and the smaller
memory frames) for both kinds, the conv encoder's keypoint token and FiLM conditioning, and a VLA with the
convolutional encoder learning a small batch."""
from dataclasses import replace

import numpy as np
import pytest
import torch

from pi07_policy.models.common.vision import VisionConfig, VisionEncoder
from pi07_policy.models.vla import RobotSpec, VLAModel, tiny_conv
from pi07_policy.models.vla.micro import micro
from pi07_policy.models.vla.synthetic import SyntheticVLADataset
from pi07_policy.models.vla.train import train_vla

torch.set_num_threads(1)


@pytest.mark.parametrize('kind', ['siglip', 'conv'])
def test_token_grid(kind):
    cfg = VisionConfig(kind=kind, image_size=64, patch_size=16, hidden_size=64, intermediate_size=128,
                       num_layers=1, num_heads=2)
    enc = VisionEncoder(cfg, out_dim=96)
    assert enc(torch.zeros(3, 3, 64, 64)).shape == (3, cfg.tokens_per_image, 96) == (3, 16, 96)
    assert enc(torch.zeros(2, 3, 48, 48)).shape == (2, 9, 96)      # memory frames are encoded smaller


def test_conv_encoder_rejects_odd_patch_and_unknown_kind():
    with pytest.raises(ValueError, match='power of 2'):
        VisionEncoder(VisionConfig(kind='conv', patch_size=12), 32)
    with pytest.raises(ValueError, match='unknown vision encoder'):
        VisionEncoder(VisionConfig(kind='resnet'), 32)


def test_keypoint_token_and_film():
    torch.manual_seed(0)
    cfg = VisionConfig(kind='conv', image_size=32, patch_size=8, hidden_size=32, film=True, keypoints=4)
    assert cfg.tokens() == 17 and cfg.grid_tokens(24) == 9
    enc = VisionEncoder(cfg, out_dim=24)
    pixels = torch.rand(2, 3, 32, 32) * 2 - 1
    assert enc.conditioned and enc(pixels).shape == (2, 17, 24)
    cond_a, cond_b = torch.zeros(2, 24), torch.ones(2, 24)
    assert torch.equal(enc(pixels, cond_a), enc(pixels, cond_b))   # FiLM starts as the identity ...
    for stage in enc.conv.stages:
        torch.nn.init.normal_(stage.film.weight, std=0.1)
    assert not torch.allclose(enc(pixels, cond_a), enc(pixels, cond_b))   # ... and reads the prompt once trained


def test_keypoint_stride_sets_the_map_resolution():
    cfg = VisionConfig(kind='conv', image_size=32, patch_size=8, hidden_size=32, keypoints=4, keypoint_stride=4)
    enc = VisionEncoder(cfg, out_dim=24)
    maps = []
    enc.conv.keypoint_maps.register_forward_hook(lambda m, i, o: maps.append(o.shape))
    assert enc(torch.zeros(2, 3, 32, 32)).shape == (2, 17, 24) and maps == [(2, 4, 8, 8)]   # 32 px / 4
    with pytest.raises(ValueError, match='keypoint_stride'):
        VisionEncoder(replace(cfg, keypoint_stride=6), 24)


def test_conv_tokens_depend_on_where_things_are():
    """Coordinate channels + position table: the same blob at two places gives different tokens."""
    torch.manual_seed(0)
    enc = VisionEncoder(VisionConfig(kind='conv', image_size=32, patch_size=8, hidden_size=32), 32)
    a, b = torch.full((2, 3, 32, 32), -1.0).unbind(0)
    a[:, 4:8, 4:8] = 1.0
    b[:, 4:8, 20:24] = 1.0
    ta, tb = enc(torch.stack([a, b]))
    assert (ta - tb).abs().mean() > 1e-3


def test_vla_with_conv_encoder_learns_a_small_batch(tmp_path):
    cfg = micro(vision=VisionConfig(kind='conv', image_size=32, patch_size=8, hidden_size=64, film=True,
                                    keypoints=8))
    data = SyntheticVLADataset(4, seed=0, horizon=10, state_dim=4, action_dim=4, image_size=32)
    robot = RobotSpec(state_dim=4, action_dim=4, embodiment='synthetic')
    policy, result = train_vla(data, cfg, tmp_path, 200, robot=robot, batch_size=4, lr=8e-3, warmup_steps=10,
                               log_every=10, plot_every=0, progress=False)
    first, last = result.first('flow_loss'), result.last('flow_loss')
    assert last < first / 5, (first, last)
    out = policy.infer({k: v for k, v in data[0].items() if k != 'actions'})['actions']
    assert out.shape == (10, 4) and np.isfinite(out).all()


def test_tiny_conv_preset():
    cfg = tiny_conv()
    assert cfg.vision.kind == 'conv' and cfg.vision.tokens_per_image == 16 + 1   # grid + keypoint token
    assert replace(cfg, action_horizon=10).vision == cfg.vision
    with torch.device('meta'):
        assert 3e6 <= sum(p.numel() for p in VLAModel(cfg).parameters()) <= 6e6


def test_film_reads_the_subtask_else_the_task():
    from pi07_policy.models.vla.modeling_vla import SEGMENT_METADATA, SEGMENT_SUBTASK, SEGMENT_TASK
    cfg = tiny_conv(action_horizon=4, state_dim=3, action_dim=3)
    model = VLAModel(replace(cfg, vision=replace(cfg.vision, film_source='subtask')))
    m, t, s = SEGMENT_METADATA, SEGMENT_TASK, SEGMENT_SUBTASK
    batch = {'text_ids': torch.randint(0, 100, (3, 6)), 'text_mask': torch.ones(3, 6, dtype=torch.bool),
             'text_segments': torch.tensor([[m, m, t, t, s, s], [m, m, t, t, t, t], [m, m, m, m, m, m]])}
    batch['text_mask'][0, 5] = False                       # a dropped / padded token is never read
    text = model.embed_tokens(batch['text_ids'])
    cond = model._film_condition(text, batch)
    assert torch.allclose(cond[0], text[0, 4]) and torch.allclose(cond[1], text[1, 2:].mean(0))
    assert torch.allclose(cond[2], text[2].mean(0))
    prompt_mean = VLAModel(cfg)._film_condition(text, batch)       # the preset: every valid prompt token
    assert torch.allclose(prompt_mean[1], text[1].mean(0))
