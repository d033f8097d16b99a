"""The VLA: sizes, overfitting, prompt components, Knowledge Insulation, RTC, save/load, corrupt checkpoints."""
import warnings

import numpy as np
import pytest
import torch

from pi07_policy.checkpoint import CheckpointError
from pi07_policy.models.vla import (
    PromptDropout,
    RobotSpec,
    VLAModel,
    VLAPolicy,
    VLAProcessor,
    count_parameters,
    pi05,
    rtc_weights,
    small,
    tiny,
)
from pi07_policy.models.vla.micro import micro
from pi07_policy.models.vla.synthetic import SyntheticVLADataset, make_sample
from pi07_policy.models.vla.train import train_vla

torch.set_num_threads(1)
ROBOT = RobotSpec(state_dim=4, action_dim=4, embodiment='synthetic')


def micro_data(n=4, seed=0):
    return SyntheticVLADataset(n, seed=seed, horizon=10, state_dim=4, action_dim=4, image_size=32)


def observation(sample):
    return {k: v for k, v in sample.items() if k != 'actions'}


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp('vla')
    policy, result = train_vla(micro_data(), micro(), out, 300, robot=ROBOT, batch_size=4, lr=8e-3, warmup_steps=10,
                               log_every=10, plot_every=0, progress=False)
    return policy, result, out


def test_parameter_counts():
    assert 4e6 <= count_parameters(VLAModel(tiny()))['total'] <= 6e6
    assert 35e6 <= count_parameters(VLAModel(small()))['total'] <= 45e6
    with torch.device('meta'):
        counts = count_parameters(VLAModel(pi05()))
    assert 3.2e9 <= counts['total'] <= 3.45e9, counts          # PaliGemma-2B-style backbone + 300M-class expert
    assert 2.85e9 <= counts['vision'] + counts['backbone'] <= 3.0e9 and 0.3e9 <= counts['expert'] <= 0.45e9


@torch.no_grad()
def eval_losses(model, batch, draws=8):
    """Training losses on a fixed batch, averaged over fixed draws of flow time and noise."""
    model.eval()
    torch.manual_seed(0)
    rows = [model(batch) for _ in range(draws)]
    return {k: float(np.mean([float(r[k]) for r in rows])) for k in rows[0]}


def test_overfits_small_batch(trained):
    policy, result, out = trained
    batch = policy.processor.collate(micro_data().samples)
    torch.manual_seed(1)
    before = eval_losses(VLAModel(micro()), batch)
    after = eval_losses(policy.model, batch)
    assert before['flow_loss'] / after['flow_loss'] >= 10, (before, after)
    assert before['fast_loss'] / after['fast_loss'] >= 10, (before, after)
    assert (out / 'loss.png').is_file() and (out / 'checkpoint' / 'model.safetensors').is_file()


def test_fits_the_training_chunks(trained):
    policy, _, _ = trained
    sample = micro_data()[0]
    err = np.abs(policy.infer(observation(sample))['actions'] - sample['actions']).mean()
    spread = np.abs(sample['actions'] - sample['actions'].mean()).mean()
    assert err < 0.5 * spread, (err, spread)


@pytest.mark.parametrize('drop', ['subtask', 'metadata', 'subgoal_images', 'memory_images', 'task', 'camera',
                                  'everything'])
def test_prompt_components_can_be_absent(trained, drop):
    policy, _, _ = trained
    obs = observation(micro_data()[1])
    if drop == 'camera':
        obs['images'] = {'wrist': obs['images']['wrist']}
    elif drop == 'everything':
        obs = {'state': obs['state']}
    else:
        obs[drop] = None
    out = policy.infer(obs)
    assert out['actions'].shape == (10, 4) and out['actions'].dtype == np.float32 and np.isfinite(out['actions']).all()


def test_prompt_dropout_masks_components():
    model = VLAModel(micro(dropout=PromptDropout(task=1.0, subtask=1.0, metadata=0.0, subgoal=1.0, memory=1.0,
                                                 extra_camera=1.0)))
    processor = VLAProcessor.build(model.config, ROBOT, micro_data().samples, fit_fast=False)
    batch = processor.collate(micro_data().samples)
    dropped = model.drop_prompt_components(batch)
    assert not dropped['subgoal_mask'].any() and not dropped['memory_mask'].any()
    assert dropped['image_mask'][:, 0].all() and not dropped['image_mask'][:, 1].any()
    kept = dropped['text_mask'] & batch['text_mask']
    assert (batch['text_segments'][kept] == 2).all() and kept.any()   # only metadata text left


def _grads(model, prefix_names):
    return [p.grad for n, p in model.named_parameters() if n.startswith(prefix_names)]


@pytest.mark.parametrize('insulated', [True, False])
def test_knowledge_insulation(insulated):
    torch.manual_seed(0)
    model = VLAModel(micro(knowledge_insulation=insulated))
    proc = VLAProcessor.build(model.config, ROBOT, micro_data().samples)
    batch = proc.collate(micro_data().samples)
    model.train()
    losses = model(batch)
    losses['flow_loss'].backward()
    backbone = ('vision.', 'embed_tokens', 'layers.', 'state_proj', 'camera_embed', 'role_embed', 'memory_time')
    bb = _grads(model, backbone)
    expert = _grads(model, ('expert_layers.0.self_attn', 'expert_layers.0.mlp', 'action_in_proj', 'action_out_proj'))
    assert all(g is not None and g.abs().sum() > 0 for g in expert)
    if insulated:
        assert all(g is None or g.abs().sum() == 0 for g in bb), 'flow loss reached the backbone'
    else:
        assert any(g is not None and g.abs().sum() > 0 for g in bb)
    model.zero_grad(set_to_none=True)
    model(batch)['fast_loss'].backward()        # and the FAST loss trains the backbone only
    assert any(g is not None and g.abs().sum() > 0 for g in _grads(model, backbone))
    assert all(g is None or g.abs().sum() == 0 for g in _grads(model, ('expert_layers', 'action_out_proj')))


@torch.no_grad()
def test_packed_prefix_is_exact():
    """Padding a sample's prompt with absent components (another sample in the batch has subgoals) must not
    change its velocity: packing moves valid tokens to the front and cuts columns no sample uses."""
    torch.manual_seed(0)
    model = VLAModel(micro()).eval()
    proc = VLAProcessor.build(model.config, ROBOT, micro_data().samples, fit_fast=False)
    batch = proc.collate(micro_data().samples[:2])
    batch['subgoal_mask'][0] = False                       # sample 0 without subgoals, sample 1 with
    prefix, mask = model.embed_prefix(batch)
    assert mask.shape[1] == int(mask.sum(1).max()) and mask[1].all()
    assert (mask[0, :int(mask[0].sum())]).all() and not mask[0, int(mask[0].sum()):].any()
    alone = {k: v[:1] for k, v in batch.items() if k not in ('subgoal_images', 'subgoal_mask')}
    x_t, t = torch.randn(1, 10, 4), torch.tensor([0.6])
    v_batch = model.predict_velocity(model.encode_prefix(batch), x_t.expand(2, -1, -1), t.expand(2))[:1]
    v_alone = model.predict_velocity(model.encode_prefix(alone), x_t, t)
    assert torch.allclose(v_batch, v_alone, atol=1e-5), (v_batch - v_alone).abs().max()


def test_flow_samples_share_one_prefix():
    """k flow draws per sample: one backbone pass, k times the expert's rows; the loss stays a mean."""
    torch.manual_seed(0)
    model = VLAModel(micro(flow_samples=4, knowledge_insulation=False)).train()
    proc = VLAProcessor.build(model.config, ROBOT, micro_data().samples, fit_fast=False)
    batch = proc.collate(micro_data().samples)
    rows = []
    handle = model.action_in_proj.register_forward_hook(lambda m, i, o: rows.append(i[0].shape[0]))
    losses = model(batch)
    handle.remove()
    assert rows == [4 * len(micro_data().samples)]
    losses['loss'].backward()
    assert model.layers[0].mlp.gate_proj.weight.grad.abs().sum() > 0      # the backbone still learns (no KI)
    model.eval()
    rows.clear()
    model.action_in_proj.register_forward_hook(lambda m, i, o: rows.append(i[0].shape[0]))
    model(batch)
    assert rows == [len(micro_data().samples)]                           # evaluation: one draw per sample


def test_rtc_weights_schedule():
    w = rtc_weights(10, delay=2, overlap=7)
    assert torch.all(w[:2] == 1) and torch.all(w[7:] == 0)
    assert torch.all(w[2:7] > 0) and torch.all(w[2:7] <= 1) and torch.all(w[2:7][1:] < w[2:7][:-1])


def test_rtc_freezes_prefix_and_joins_smoothly():
    """One observation, many valid chunks (random offsets): plain sampling picks any of them, so a new chunk
    jumps away from the one being executed; RTC keeps the first d actions and continues the old one."""
    base = make_sample(np.random.default_rng(5), horizon=10, state_dim=4, action_dim=4, image_size=32)
    rng = np.random.default_rng(0)
    samples = [{**base, 'actions': base['actions'] + np.float32(rng.uniform(-1, 1))} for _ in range(16)]
    policy, _ = train_vla(samples, micro(), None, 200, robot=ROBOT, batch_size=8, lr=8e-3, warmup_steps=10,
                          progress=False)
    obs = observation(base)
    d, s = 3, 8
    for seed in range(2):
        policy.generator.manual_seed(seed)
        plain = policy.infer({**obs, 'mode': 'sync'})['actions']
        prev = plain + np.linspace(0.8, 0.4, 10, dtype=np.float32)[:, None]   # an older plan, offset from this one
        policy.generator.manual_seed(seed)
        rtc = policy.infer({**obs, 'prev_actions': prev, 'delay_steps': d, 'execution_horizon': s, 'mode': 'rtc'})
        assert rtc['frozen_steps'] == d and rtc['mode'] == 'rtc'
        assert np.abs(rtc['actions'][:d] - prev[:d]).max() < 1e-6                  # frozen prefix kept exactly
        # At the switch (step d) the executor goes from prev[d-1] to new[d]: compare with prev[d].
        jump_plain = np.abs(plain[d] - prev[d]).mean()
        jump_rtc = np.abs(rtc['actions'][d] - prev[d]).mean()
        assert jump_rtc < 0.25 * jump_plain, (jump_rtc, jump_plain)
        assert np.abs(rtc['actions'][d:s] - prev[d:s]).mean() < 0.5 * np.abs(plain[d:s] - prev[d:s]).mean()


def test_training_time_rtc_gives_the_frozen_rows_clean_and_trains_on_the_rest(monkeypatch):
    """rtc_train_prob: the first d rows enter the expert as the clean actions at flow time 0, the others noisy at
    the sample's time; the loss counts only the others."""
    torch.manual_seed(0)
    model = VLAModel(micro(rtc_train_prob=1.0, rtc_max_delay=3)).train()
    proc = VLAProcessor.build(model.config, ROBOT, micro_data().samples, fit_fast=False)
    batch = proc.collate(micro_data().samples)
    seen = {}
    original = model.predict_velocity

    def spy(cache, x_t, t):
        seen.update(x_t=x_t.detach(), t=t.detach())
        return original(cache, x_t, t)

    monkeypatch.setattr(model, 'predict_velocity', spy)
    model(batch)
    t, x_t = seen['t'], seen['x_t']
    assert t.shape == batch['actions'].shape[:2]
    frozen = t == 0
    delays = frozen.sum(1)
    assert torch.all((delays >= 1) & (delays <= 3)) and torch.all(frozen[:, 0])
    assert torch.equal(frozen, torch.arange(t.shape[1])[None] < delays[:, None])    # a prefix, not scattered rows
    assert torch.allclose(x_t[frozen], batch['actions'][frozen])
    assert torch.all(t[~frozen] > 0)
    # rtc_prefix_noise: the frozen rows off course by a heading error growing along them, (i + 1) / d of it at row i
    model = VLAModel(micro(rtc_train_prob=1.0, rtc_max_delay=3, rtc_prefix_noise=0.5)).train()
    original = model.predict_velocity
    monkeypatch.setattr(model, 'predict_velocity', spy)
    model(batch)
    frozen = seen['t'] == 0
    off = seen['x_t'] - batch['actions']
    for row, d in zip(off, frozen.sum(1)):
        end = row[d - 1]
        assert end.abs().max() > 0
        for i in range(int(d)):
            assert torch.allclose(row[i], end * (i + 1) / d, atol=1e-5)
    with pytest.raises(ValueError, match='rtc_max_delay'):
        micro(rtc_train_prob=0.5, rtc_max_delay=10, action_horizon=10)


def test_training_time_rtc_continues_the_frozen_rows_without_guidance():
    """The multimodal set of the guidance test: a model trained with training-time RTC, given the first d rows of
    one mode, continues that mode (plain sampling picks any), with no backward pass; 'frozen' needs such a model."""
    base = make_sample(np.random.default_rng(5), horizon=10, state_dim=4, action_dim=4, image_size=32)
    rng = np.random.default_rng(0)
    offsets = rng.uniform(-1, 1, 16).astype(np.float32)
    samples = [{**base, 'actions': base['actions'] + off} for off in offsets]
    torch.manual_seed(0)
    policy, _ = train_vla(samples, micro(rtc_train_prob=0.5, rtc_max_delay=5), None, 250, robot=ROBOT,
                          batch_size=8, lr=8e-3, warmup_steps=10, progress=False)
    assert policy.rtc_method == 'frozen'
    obs = observation(base)
    d = 3
    plain_err, frozen_err = [], []
    for seed, off in enumerate(offsets[:4]):
        prev = base['actions'] + off                                                # one of the modes
        policy.generator.manual_seed(seed)
        plain = policy.infer({**obs, 'mode': 'sync'})['actions']
        policy.generator.manual_seed(seed)
        out = policy.infer({**obs, 'prev_actions': prev, 'delay_steps': d, 'mode': 'rtc'})
        assert out['frozen_steps'] == d and np.abs(out['actions'][:d] - prev[:d]).max() < 1e-6
        plain_err.append(np.abs(plain[d:] - prev[d:]).mean())
        frozen_err.append(np.abs(out['actions'][d:] - prev[d:]).mean())
    assert np.mean(frozen_err) < 0.4 * np.mean(plain_err), (frozen_err, plain_err)
    with pytest.raises(ValueError, match='training-time RTC'):
        VLAPolicy(VLAModel(micro()), policy.processor, rtc_method='frozen')
    policy.rtc_method = 'guidance'   # the guided path still works on such a model
    out = policy.infer({**obs, 'prev_actions': prev, 'delay_steps': d, 'execution_horizon': 8, 'mode': 'rtc'})
    assert np.abs(out['actions'][:d] - prev[:d]).max() < 1e-6


def test_save_load_identical_outputs_and_errors(trained, tmp_path):
    policy, result, _ = trained
    obs = observation(micro_data()[2])
    loaded = VLAPolicy.from_checkpoint(result.checkpoint_dir, expected_embodiment='synthetic')
    fresh = VLAPolicy(policy.model, policy.processor, seed=0)
    assert np.array_equal(fresh.infer(obs)['actions'], loaded.infer(obs)['actions'])
    with pytest.raises(CheckpointError, match="embodiment 'synthetic', not 'ur5e'"):
        VLAPolicy.from_checkpoint(result.checkpoint_dir, expected_embodiment='ur5e')
    copy = tmp_path / 'copy'
    policy.save(copy)
    data = (copy / 'model.safetensors').read_bytes()
    (copy / 'model.safetensors').write_bytes(data[:1000])
    with pytest.raises(CheckpointError, match='truncated'):
        VLAPolicy.from_checkpoint(copy)
    policy.save(copy)
    (copy / 'text_tokenizer.json').write_text('{}')
    with pytest.raises(CheckpointError, match='text_tokenizer.json: truncated or modified'):
        VLAPolicy.from_checkpoint(copy)


def test_noise_scale_zero_gives_deterministic_chunks(trained):
    policy, _, _ = trained
    obs = observation(micro_data()[1])
    still = VLAPolicy(policy.model, policy.processor, seed=None, noise_scale=0.0)
    assert np.array_equal(still.infer(obs)['actions'], still.infer(obs)['actions'])
    noisy = VLAPolicy(policy.model, policy.processor, seed=None)
    assert not np.array_equal(noisy.infer(obs)['actions'], noisy.infer(obs)['actions'])
    with pytest.raises(ValueError, match='noise_scale'):
        VLAPolicy(policy.model, policy.processor, noise_scale=-1.0)


def test_goal_head_learns_where_the_subtask_ends():
    """goal_loss_weight > 0: a head on the state token regresses the goal state; the loss drops with training and
    reaches the backbone. Without the weight there is no head (older checkpoints keep loading) and no goal loss."""
    torch.manual_seed(0)
    samples = micro_data().samples
    goal = [dict(s, goal_state=(s['state'] * -0.5 + i).astype(np.float32)) for i, s in enumerate(samples)]
    plain = VLAModel(micro())
    assert not any(n.startswith('goal_head') for n, _ in plain.named_parameters())
    proc = VLAProcessor.build(plain.config, ROBOT, samples, fit_fast=False)
    batch = proc.collate(goal)
    assert batch['goal_state'].shape == batch['state'].shape and batch['goal_mask'][:, :4].all()
    assert 'goal_loss' not in plain(batch)
    model = VLAModel(micro(goal_loss_weight=1.0, knowledge_insulation=True)).train()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = float(model(batch)['goal_loss'].detach())
    for step in range(60):
        losses = model(batch)
        opt.zero_grad()
        losses['loss'].backward()
        if step == 0:   # with KI the flow loss stops at the backbone; the goal loss does not
            assert model.layers[0].mlp.gate_proj.weight.grad.abs().sum() > 0
        opt.step()
    assert float(model(batch)['goal_loss'].detach()) < first / 5
    # the image encoder's own head: in the training losses, and alone (goal pretraining) without the backbone
    assert 'vision_goal_loss' in model(batch)
    model.zero_grad()
    model.vision_goal_loss(batch)['loss'].backward()
    assert model.vision.projector.weight.grad.abs().sum() > 0 and model.layers[0].mlp.gate_proj.weight.grad is None


def test_goal_conditioned_expert_reads_the_heads_predictions():
    """goal_conditioning: the expert's velocity depends on the detached goal input (the image encoder's goal
    prediction + state) that encode_prefix attaches; training may swap in the true goal (teacher forcing); the
    flow loss trains the expert's goal path but not the heads through it."""
    with pytest.raises(ValueError, match='goal heads'):
        micro(goal_conditioning=True)
    with pytest.raises(ValueError, match='goal_teacher_forcing'):
        micro(goal_loss_weight=1.0, goal_conditioning=True, goal_teacher_forcing=1.5)
    torch.manual_seed(0)
    samples = micro_data().samples
    goal = [dict(s, goal_state=(s['state'] * -0.5 + i).astype(np.float32)) for i, s in enumerate(samples)]
    model = VLAModel(micro(goal_loss_weight=1.0, goal_conditioning=True)).eval()
    with torch.no_grad():   # adaRMS modulation starts at zero (condition ignored); give it a trained model's
        for name, p in model.named_parameters():
            if 'modulation' in name:
                p.normal_(std=0.05)
    proc = VLAProcessor.build(model.config, ROBOT, samples, fit_fast=False)
    batch = proc.collate(goal)
    with torch.no_grad():
        cache = model.encode_prefix(batch)
        assert cache.goal_input.shape == (len(samples), 2 * model.config.state_dim)
        x_t, t = torch.randn(len(samples), model.config.action_horizon, model.config.action_dim), torch.full((4,), .5)
        before = model.predict_velocity(cache, x_t, t)
        cache.goal_input = cache.goal_input + 1.0
        assert not torch.allclose(before, model.predict_velocity(cache, x_t, t))
    forced = VLAModel(micro(goal_loss_weight=1.0, goal_conditioning=True, goal_teacher_forcing=1.0, goal_noise=0.0))
    cache = forced.train().encode_prefix(batch)
    forced.attach_goal(cache, batch, None)
    assert torch.allclose(cache.goal_input[:, :forced.config.state_dim], batch['goal_state'] * batch['goal_mask'])
    model.train()
    flow = model(batch)['flow_loss']
    flow.backward()
    assert model.goal_cond_mlp[0].weight.grad.abs().sum() > 0
    assert model.goal_head[0].weight.grad is None and model.vision_goal_head[0].weight.grad is None
    # the policy boundary samples chunks with the goal input attached (plain and RTC)
    policy = VLAPolicy(model.eval(), proc)
    out = policy.infer(observation(samples[0]))
    assert out['actions'].shape == (model.config.action_horizon, ROBOT.action_dim)
    rtc = policy.infer(dict(observation(samples[0]), prev_actions=out['actions'][2:], delay_steps=2, mode='rtc'))
    assert np.allclose(rtc['actions'][:2], out['actions'][2:4])


def test_vision_goal_head_can_predict_the_displacement_from_images_alone():
    """vision_goal_reads_state=False: the head sees no state, so moving the state moves the predicted goal by the
    same amount (it cannot learn "the goal is where I am heading"); the default head reads the state."""
    with pytest.raises(ValueError, match='goal_loss_weight'):
        micro(vision_goal_reads_state=False)
    torch.manual_seed(0)
    samples = micro_data().samples
    for reads_state in (True, False):
        model = VLAModel(micro(goal_loss_weight=1.0, vision_goal_reads_state=reads_state)).eval()
        proc = VLAProcessor.build(model.config, ROBOT, samples, fit_fast=False)
        batch = proc.collate(samples)
        with torch.no_grad():
            _, cond = model._embed_text(batch)
            tokens = model._encode_images(batch['images'], batch['image_mask'], 0, cond)
            moved = dict(batch, state=batch['state'] + 0.3)
            shift = model.vision_goal(tokens, moved) - model.vision_goal(tokens, batch)
        assert torch.allclose(shift, torch.full_like(shift, 0.3), atol=1e-5) != reads_state


def test_pretrained_encoder_prefixes_name_what_goal_pretraining_trains():
    """The parameters `encoder_lr_scale` slows are exactly those the encoder-only goal loss gives a gradient."""
    samples = micro_data().samples
    goal = [dict(s, goal_state=s['state'].astype(np.float32)) for s in samples]
    for kind in ('siglip', 'conv'):
        cfg = micro(goal_loss_weight=1.0)
        if kind == 'conv':
            from dataclasses import replace

            from pi07_policy.models.common.vision import VisionConfig
            cfg = replace(cfg, vision=VisionConfig(kind='conv', image_size=cfg.vision.image_size, patch_size=8,
                                                   hidden_size=32, film=True, keypoints=4, keypoint_stride=4))
        model = VLAModel(cfg)
        batch = VLAProcessor.build(model.config, ROBOT, samples, fit_fast=False).collate(goal)
        model.vision_goal_loss(batch)['loss'].backward()
        prefixes = model.pretrained_encoder_prefixes()
        for name, p in model.named_parameters():
            if name.startswith(('embed_tokens', 'camera_embed', 'role_embed')):
                continue        # the backbone's embeddings (FiLM reads the text's too): kept at the full rate
            trained = p.grad is not None and bool(p.grad.abs().sum() > 0)
            assert trained == name.startswith(prefixes), (kind, name)


def test_vision_goal_head_reads_the_memory_keyframe():
    """vision_goal_reads_memory: the goal head reads the oldest memory frame (at full size) beside the current
    images, so a goal only the start of an episode shows can be located; without memory (absent or dropped) that
    input is zeros, and a model without the flag ignores memory frames."""
    torch.manual_seed(0)
    samples = micro_data().samples
    for reads_memory in (True, False):
        cfg = micro(goal_loss_weight=1.0, vision_goal_reads_memory=reads_memory, memory_keeps_first_frame=reads_memory)
        model = VLAModel(cfg).eval()
        proc = VLAProcessor.build(model.config, ROBOT, samples, fit_fast=False)
        batch = proc.collate(samples)
        assert ('memory_keyframe' in batch) == reads_memory
        if reads_memory:
            assert batch['memory_keyframe'].shape[-1] == cfg.vision.image_size
        with torch.no_grad():
            _, cond = model._embed_text(batch)
            tokens = model._encode_images(batch['images'], batch['image_mask'], 0, cond)
            base = model.vision_goal(tokens, batch)
            other = [dict(s, memory_images={c: [255 - f for f in v] for c, v in s['memory_images'].items()})
                     for s in samples]
            changed = model.vision_goal(tokens, proc.collate(other))
            no_memory = {k: v for k, v in batch.items() if not k.startswith('memory')}
            dropped = dict(batch, memory_mask=torch.zeros_like(batch['memory_mask']))
            assert torch.allclose(model.vision_goal(tokens, no_memory), model.vision_goal(tokens, dropped))
        assert (not torch.allclose(base, changed)) == reads_memory
    with pytest.raises(ValueError, match='goal heads'):
        micro(vision_goal_reads_memory=True)


def test_vision_goal_head_locates_a_goal_only_the_keyframe_shows():
    """Goal pretraining on samples whose goal is the keyframe's brightness (the current images carry none of it):
    the keyframe head learns it, the plain head cannot do better than the mean."""
    rng = np.random.default_rng(0)
    shared = make_sample(rng, horizon=10, state_dim=4, action_dim=4, image_size=32, memory_frames=2)
    samples = []
    for _ in range(16):   # the same images and prompt in every sample; the goal is the state + a displacement
        s = dict(shared, state=rng.uniform(-1, 1, 4).astype(np.float32))   # that only the keyframe shows
        level = rng.uniform(-1, 1)
        first = np.full((32, 32, 3), int(127 + 120 * level), np.uint8)
        s['memory_images'] = {c: [first, v[-1]] for c, v in s['memory_images'].items()}
        s['goal_state'] = s['state'] + np.float32(level)
        samples.append(s)
    losses = {}
    for reads_memory in (True, False):
        torch.manual_seed(0)
        model = VLAModel(micro(goal_loss_weight=1.0, vision_goal_reads_memory=reads_memory,
                               vision_goal_reads_state=False))
        batch = VLAProcessor.build(model.config, ROBOT, samples, fit_fast=False).collate(samples)
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        for _ in range(150):
            opt.zero_grad()
            loss = model.vision_goal_loss(batch)['loss']
            loss.backward()
            opt.step()
        losses[reads_memory] = float(loss.detach())
    assert losses[True] < 0.3 * losses[False], losses


def test_keyframe_encoder_is_the_goal_heads_alone():
    """keyframe_encoder: the keyframe goes through its own encoder copy, which only the goal estimate reads; a
    per-sample goal mask (hindsight samples) leaves the other dimensions out of the goal loss."""
    torch.manual_seed(0)
    samples = micro_data().samples
    model = VLAModel(micro(goal_loss_weight=1.0, vision_goal_reads_memory=True, memory_keeps_first_frame=True,
                           keyframe_encoder=True)).eval()
    assert set(model.goal_path_prefixes()) == {'vision_goal_head', 'keyframe_vision'}
    proc = VLAProcessor.build(model.config, ROBOT, samples, fit_fast=False)
    batch = proc.collate(samples)
    with torch.no_grad():
        _, cond = model._embed_text(batch)
        tokens = model._encode_images(batch['images'], batch['image_mask'], 0, cond)
        goal, prefix = model.vision_goal(tokens, batch), model.embed_prefix(batch)[0]
        for p in model.keyframe_vision.parameters():
            p.add_(0.1 * torch.randn_like(p))
        assert not torch.allclose(goal, model.vision_goal(tokens, batch))     # the goal head reads it
        assert torch.equal(prefix, model.embed_prefix(batch)[0])               # the backbone does not
    with pytest.raises(ValueError, match='keyframe_encoder'):
        micro(goal_loss_weight=1.0, keyframe_encoder=True)
    masked = [dict(s, goal_state=s['state'] + 0.5, goal_mask=np.arange(len(s['state'])) < 2) for s in samples]
    batch = proc.collate(masked)
    assert batch['goal_mask'][:, :2].all() and not batch['goal_mask'][:, 2:].any()
    far = proc.collate([dict(s, goal_state=np.concatenate([s['goal_state'][:2], s['goal_state'][2:] + 100]))
                        for s in masked])
    with torch.no_grad():
        assert torch.allclose(model.vision_goal_loss(batch)['loss'], model.vision_goal_loss(far)['loss'])


def test_a_prompt_too_long_loses_the_end_of_its_task_not_its_subtask():
    samples = micro_data().samples
    task = 'put the red block in the bowl, then the blue one, then the green one, and then the yellow one ' * 2
    subtask = 'pick up the blue block'
    for keep in (True, False):
        proc = VLAProcessor.build(micro(max_text_tokens=32, keep_subtask=keep), ROBOT, samples, fit_fast=False)
        with pytest.warns(UserWarning, match='end of its ' + ('task' if keep else 'subtask') + ' is cut'):
            ids, segs = proc.text(task, subtask, {'speed': 3, 'quality': 5})
        with warnings.catch_warnings():   # said once: a training run's prompts of many lengths do not repeat it
            warnings.simplefilter('error')
            proc.text(task + ' and the red one', subtask, None)
        subtask_ids = proc.text_tokenizer.encode(f'Subtask: {subtask}. ').ids
        assert len(ids) == 32                                              # too long: every slot used
        assert (ids[-len(subtask_ids):].tolist() == subtask_ids) == keep    # the old rule cut the subtask
        assert (segs == 1).any() == keep and segs[0] == 2     # segments: 1 subtask, 2 metadata (always first)
    assert micro().keep_subtask and tiny().keep_subtask and small().keep_subtask and pi05().keep_subtask
