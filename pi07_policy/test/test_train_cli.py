"""`train` command line on a small converted dataset: a short VLA run lowers the loss and exports a checkpoint the
ROS nodes accept (embodiment, cameras, state/action sizes of the profile); the high-level and world-model
subcommands run and export; open-loop evaluation writes its report and plot; a closed-loop rollout runs."""
from __future__ import annotations

import json
import shlex
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch
from policy_data_fixtures import write_bag, write_profile

from pi07_policy import evaluate_open_loop, train_cli
from pi07_policy.data.convert import convert
from pi07_policy.data.profile_spec import load_profile_spec


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp('train')
    profile_path = write_profile(root / 'test_bot.yaml')
    profile = load_profile_spec(profile_path)
    for seed in range(4):
        write_bag(root / 'bags' / f'ep_{seed}', steps=30, seed=seed)
    convert([root / 'bags'], root / 'dataset', profile, val_fraction=0.25, progress=False, log=lambda *_: None)
    return root, profile_path


def _common(root, profile_path, name):
    return ['--dataset', str(root / 'dataset'), '--profile', str(profile_path), '--out', str(root / name),
            '--export', str(root / f'{name}_export'), '--config', 'micro', '--workers', '0', '--log-every', '5',
            '--plot-every', '0', '--save-every', '0']


def test_vla_training_lowers_loss_and_exports_a_usable_checkpoint(setup):
    root, profile_path = setup
    args = ['vla', *_common(root, profile_path, 'vla'), '--steps', '60', '--batch-size', '8', '--lr', '1e-3',
            '--horizon', '6', '--subgoal-prob', '0.3', '--memory-prob', '0.3', '--image-shift', '1']
    assert train_cli.main(args) == 0
    summary = json.loads((root / 'vla' / 'summary.json').read_text())
    history = [json.loads(line) for line in (root / 'vla' / 'history.jsonl').read_text().splitlines()]
    assert history[-1]['loss'] < 0.8 * history[0]['loss'], (history[0], history[-1])
    assert history[-1]['flow_loss'] < 0.8 * history[0]['flow_loss'], (history[0], history[-1])
    assert summary['steps'] == 60 and 'val_flow_loss' in summary
    # the run says how it was made: the command line and every option, defaults included
    assert summary['command'] == shlex.join(['python', '-m', 'pi07_policy.train_cli', *args])
    assert summary['args']['horizon'] == 6 and summary['args']['unknown_place_prob'] == 0.0
    assert train_cli.launcher_prefix({'WORLD_SIZE': '2', 'LOCAL_WORLD_SIZE': '2'}) == [
        'torchrun', '--nproc_per_node=2', '-m']   # a distributed run is recorded as one, to rerun it the same way
    assert (root / 'vla' / 'loss.png').stat().st_size > 1000

    from pi07_policy.models.vla.policy import VLAPolicy
    policy = VLAPolicy.from_checkpoint(root / 'vla_export', expected_embodiment='testbot')
    robot = policy.processor.robot
    assert robot.camera_names == ('scene', 'wrist') and robot.state_dim == robot.action_dim == 3
    assert robot.delta_action_mask == (True, True, False)          # joints relative to the state, gripper absolute
    out = policy.infer({'images': {c: np.zeros((16, 16, 3), np.uint8) for c in ('scene', 'wrist')},
                        'state': np.zeros(3, np.float32), 'task': 'put the red block in the bowl'})
    assert out['actions'].shape == (6, 3) and np.isfinite(out['actions']).all()

    # resume continues from the saved step
    assert train_cli.main(['vla', *_common(root, profile_path, 'vla'), '--steps', '70', '--batch-size', '8',
                           '--horizon', '6', '--resume']) == 0
    assert json.loads((root / 'vla' / 'summary.json').read_text())['steps'] == 70

    report_dir = root / 'open_loop'
    assert evaluate_open_loop.main(['--checkpoint', str(root / 'vla_export'), '--dataset', str(root / 'dataset'),
                                    '--stride', '10', '--out', str(report_dir)]) == 0
    report = json.loads((report_dir / 'open_loop.json').read_text())
    assert len(report['chunk']['mae']) == 3 and report['predictions'] == 3
    assert (report_dir / 'open_loop.png').stat().st_size > 1000
    with pytest.raises(SystemExit):   # --goal needs a model with the goal heads
        evaluate_open_loop.main(['--checkpoint', str(root / 'vla_export'), '--dataset', str(root / 'dataset'),
                                 '--goal', '--out', str(report_dir)])


def test_vla_goal_heads_and_encoder_pretraining(setup):
    """--goal-weight adds the goal-state heads, --goal-pretrain-steps first trains the image encoder alone on
    segment starts: that stage's loss falls, the VLA stage logs both goal losses, the checkpoint keeps the heads."""
    root, profile_path = setup
    assert train_cli.main(['vla', *_common(root, profile_path, 'goal'), '--steps', '20', '--batch-size', '8',
                           '--horizon', '6', '--no-ki', '--goal-weight', '1', '--goal-pretrain-steps', '40',
                           '--goal-pretrain-batch-size', '8', '--goal-pretrain-lr', '3e-3', '--goal-conditioning',
                           '--goal-noise', '0.05', '--goal-teacher-forcing', '0.8', '--encoder-lr-scale', '0.1']) == 0
    summary = json.loads((root / 'goal' / 'summary.json').read_text())
    assert summary['goal_pretrain_steps'] == 40
    assert summary['goal_pretrain_loss_last'] < 0.7 * summary['goal_pretrain_loss_first'], summary
    assert 'val_goal_loss' in summary
    history = [json.loads(line) for line in (root / 'goal' / 'history.jsonl').read_text().splitlines()]
    assert {'goal_loss', 'vision_goal_loss'} <= set(history[-1])
    from pi07_policy.models.vla.policy import VLAPolicy
    policy = VLAPolicy.from_checkpoint(root / 'goal_export')
    assert policy.model.config.goal_loss_weight == 1 and hasattr(policy.model, 'vision_goal_head')
    assert (policy.model.config.goal_noise, policy.model.config.goal_teacher_forcing) == (0.05, 0.8)
    from pi07_policy.checkpoint import load_checkpoint
    state = load_checkpoint(root / 'goal' / 'checkpoint').read_json('trainer_state.json')
    groups = state['optimizer']['param_groups']
    assert sorted({g['lr_scale'] for g in groups}) == [0.1, 1.0]   # the pretrained encoder parts learn slower
    # the goal head's open-loop error: one sample per subtask segment of the held-out episode, per state dimension
    report_dir = root / 'goal_report'
    assert evaluate_open_loop.main(['--checkpoint', str(root / 'goal_export'), '--dataset', str(root / 'dataset'),
                                    '--goal', '--no-actions', '--out', str(report_dir)]) == 0
    report = json.loads((report_dir / 'open_loop.json').read_text())
    goal = report['goal']
    assert goal['samples'] >= 1 and len(goal['mae']) == len(goal['state_names']) == 3
    assert all(np.isfinite(goal['median'])) and 'chunk' not in report        # --no-actions: no chunk part
    with pytest.raises(SystemExit, match='goal-weight'):
        train_cli.main(['vla', *_common(root, profile_path, 'nogoal'), '--steps', '2', '--goal-pretrain-steps', '5'])


def test_vla_memory_keyframe(setup):
    """--memory-keyframe: the config records the memory layout and the goal head that reads the keyframe (goal
    pretraining included); the goal report with --with-memory reads it, per subtask."""
    root, profile_path = setup
    assert train_cli.main(['vla', *_common(root, profile_path, 'keyframe'), '--steps', '4', '--batch-size', '8',
                           '--horizon', '6', '--no-ki', '--goal-weight', '1', '--goal-pretrain-steps', '4',
                           '--goal-pretrain-batch-size', '8', '--goal-conditioning', '--vision-goal-displacement',
                           '--memory-keyframe', '--memory-prob', '0.5']) == 0
    config = json.loads((root / 'keyframe_export' / 'config.json').read_text())['config']
    assert config['memory_keeps_first_frame'] and config['vision_goal_reads_memory']
    report_dir = root / 'keyframe_report'
    assert evaluate_open_loop.main(['--checkpoint', str(root / 'keyframe_export'), '--dataset', str(root / 'dataset'),
                                    '--goal', '--with-memory', '--no-actions', '--out', str(report_dir)]) == 0
    goal = json.loads((report_dir / 'open_loop.json').read_text())['goal']
    assert goal['with_memory'] and goal['per_subtask']
    assert sum(v['samples'] for v in goal['per_subtask'].values()) == goal['samples']


def test_vla_goal_head_only_with_a_keyframe_encoder(setup):
    """--goal-head-only --keyframe-encoder from a keyframe VLA (hindsight return samples in its goal data): the
    keyframe's encoder starts as a copy of the image encoder, only it and the goal head change, and the goal loss
    falls."""
    from safetensors.torch import load_file
    root, profile_path = setup
    base = ['--horizon', '6', '--no-ki', '--goal-weight', '1', '--goal-conditioning', '--vision-goal-displacement',
            '--memory-keyframe']
    assert train_cli.main(['vla', *_common(root, profile_path, 'kf_base'), *base, '--steps', '2',
                           '--batch-size', '4', '--rtc-train-prob', '0.5', '--rtc-max-delay', '3']) == 0
    tuned = ['vla', *_common(root, profile_path, 'kf_goal'), *base, '--init-from', str(root / 'kf_base_export'),
             '--keyframe-encoder', '--goal-head-only', '--steps', '40', '--goal-pretrain-batch-size', '8',
             '--goal-pretrain-lr', '3e-3', '--hindsight-return-prob', '0.5', '--hindsight-return-dims', '0', '1']
    assert train_cli.main(tuned) == 0
    before, after = (load_file(root / f'{n}_export' / 'model.safetensors') for n in ('kf_base', 'kf_goal'))
    changed = {k.split('.')[0] for k in before if not torch.equal(before[k], after[k])}
    assert changed == {'vision_goal_head'}, changed
    copies = [k for k in after if k.startswith('keyframe_vision.')]
    assert copies and set(copies) == {'keyframe_' + k for k in before if k.startswith('vision.')}
    assert any(not torch.equal(after[k], before[k[len('keyframe_'):]]) for k in copies)   # trained from the copy
    configs = [json.loads((root / f'{n}_export' / 'config.json').read_text())['config'] for n in ('kf_base', 'kf_goal')]
    assert configs[1].pop('keyframe_encoder') and not configs[0].pop('keyframe_encoder')
    assert configs[0] == configs[1]        # the rest of the config as trained (its RTC too), not this command's knobs
    history = [json.loads(x) for x in (root / 'kf_goal' / 'history.jsonl').read_text().splitlines()]
    assert history[-1]['step'] == 40 and history[-1]['loss'] < history[0]['loss'], history
    with pytest.raises(SystemExit, match='init-from'):
        train_cli.main(['vla', *_common(root, profile_path, 'kf_bad'), *base, '--goal-head-only', '--steps', '2'])


def test_vla_fine_tune_adds_the_memory_keyframe(setup):
    """--init-from a goal-head VLA trained without --memory-keyframe, with it: the goal head is widened for the
    keyframe and text inputs at zero weight (the same estimate as before when no keyframe is given), and the
    fine-tuned checkpoint keeps the keyframe layout."""
    from pi07_policy.checkpoint import load_checkpoint
    from pi07_policy.models.vla.configuration_vla import VLAConfig
    from pi07_policy.models.vla.modeling_vla import VLAModel
    root, profile_path = setup
    base = ['--horizon', '6', '--no-ki', '--goal-weight', '1', '--goal-conditioning', '--vision-goal-displacement',
            '--batch-size', '4']
    assert train_cli.main(['vla', *_common(root, profile_path, 'nokf'), *base, '--steps', '2']) == 0
    ckpt = load_checkpoint(root / 'nokf_export', VLAConfig.model_type, config_cls=VLAConfig)
    assert not ckpt.config.vision_goal_reads_memory
    wide_config = replace(ckpt.config, memory_keeps_first_frame=True, vision_goal_reads_memory=True)
    weights = {**ckpt.state_dict, **train_cli.widen_goal_head_for_keyframe(ckpt.state_dict, wide_config)}
    old, wide = VLAModel(ckpt.config).eval(), VLAModel(wide_config).eval()
    old.load_state_dict(ckpt.state_dict)
    wide.load_state_dict(weights)
    torch.manual_seed(0)
    b, cams, d = 2, 2, ckpt.config.decoder.hidden_size
    batch = {'image_mask': torch.ones(b, cams, dtype=torch.bool), 'state': torch.randn(b, 3),
             'text_ids': torch.randint(0, 50, (b, 8)), 'text_mask': torch.ones(b, 8, dtype=torch.bool)}
    tokens = torch.randn(b, cams * ckpt.config.vision.tokens_per_image, d)
    with torch.no_grad():
        torch.testing.assert_close(wide.vision_goal(tokens, batch), old.vision_goal(tokens, batch))
    assert train_cli.main(['vla', *_common(root, profile_path, 'addkf'), *base, '--steps', '3', '--memory-keyframe',
                           '--memory-prob', '0.5', '--init-from', str(root / 'nokf_export')]) == 0
    config = json.loads((root / 'addkf_export' / 'config.json').read_text())['config']
    assert config['memory_keeps_first_frame'] and config['vision_goal_reads_memory']


def test_vla_goal_head_learns_to_read_subgoal_images(setup):
    """--subgoal-goal-head --goal-head-only: the goal head is widened for the subgoal images at zero weight (the
    same estimate as before, with or without them), the subgoal encoder starts as a copy of the image encoder, only
    the goal path changes in training, and the trained head's estimate then depends on the subgoal image."""
    from safetensors.torch import load_file

    from pi07_policy.checkpoint import load_checkpoint
    from pi07_policy.models.vla.configuration_vla import VLAConfig
    from pi07_policy.models.vla.modeling_vla import VLAModel
    root, profile_path = setup
    base = ['--horizon', '6', '--no-ki', '--goal-weight', '1', '--goal-conditioning', '--vision-goal-displacement']
    assert train_cli.main(['vla', *_common(root, profile_path, 'sg_base'), *base, '--steps', '2',
                           '--batch-size', '4']) == 0
    ckpt = load_checkpoint(root / 'sg_base_export', VLAConfig.model_type, config_cls=VLAConfig)
    wide_config = replace(ckpt.config, vision_goal_reads_subgoal=True)
    old, wide = VLAModel(ckpt.config).eval(), VLAModel(wide_config).eval()
    old.load_state_dict(ckpt.state_dict)
    wide.load_state_dict({**ckpt.state_dict, **train_cli.widen_goal_head_for_subgoal(ckpt.state_dict, wide_config)})
    torch.manual_seed(0)
    b, cams, size, d = 2, 2, ckpt.config.vision.image_size, ckpt.config.decoder.hidden_size
    batch = {'image_mask': torch.ones(b, cams, dtype=torch.bool), 'state': torch.randn(b, 3),
             'text_ids': torch.randint(0, 50, (b, 8)), 'text_mask': torch.ones(b, 8, dtype=torch.bool)}
    with_subgoal = {**batch, 'subgoal_images': torch.rand(b, cams, 3, size, size),
                    'subgoal_mask': torch.ones(b, cams, dtype=torch.bool)}
    tokens = torch.randn(b, cams * ckpt.config.vision.tokens_per_image, d)
    with torch.no_grad():
        torch.testing.assert_close(wide.vision_goal(tokens, batch), old.vision_goal(tokens, batch))
        torch.testing.assert_close(wide.vision_goal(tokens, with_subgoal), old.vision_goal(tokens, batch))

    assert train_cli.main(['vla', *_common(root, profile_path, 'sg_goal'), *base,
                           '--init-from', str(root / 'sg_base_export'), '--subgoal-goal-head', '--goal-head-only',
                           '--steps', '30', '--goal-pretrain-batch-size', '8', '--goal-pretrain-lr', '3e-3',
                           '--goal-pretrain-subgoal-prob', '0.5']) == 0
    before, after = (load_file(root / f'{n}_export' / 'model.safetensors') for n in ('sg_base', 'sg_goal'))
    changed = {k.split('.')[0] for k in before if not torch.equal(before[k], after[k])}
    assert changed == {'vision_goal_head'}, changed      # the backbone, the expert and the image encoder as they were
    copies = [k for k in after if k.startswith('subgoal_vision.')]
    assert copies and set(copies) == {'subgoal_' + k for k in before if k.startswith('vision.')}
    config = json.loads((root / 'sg_goal_export' / 'config.json').read_text())['config']
    assert config['vision_goal_reads_subgoal']
    trained = load_checkpoint(root / 'sg_goal_export', VLAConfig.model_type, config_cls=VLAConfig)
    model = VLAModel(trained.config).eval()
    model.load_state_dict({k: v.float() for k, v in trained.state_dict.items()})
    other = {**with_subgoal, 'subgoal_images': 1 - with_subgoal['subgoal_images']}
    with torch.no_grad():
        assert not torch.allclose(model.vision_goal(tokens, with_subgoal), model.vision_goal(tokens, other))
        torch.testing.assert_close(model.vision_goal(tokens, batch),   # no subgoal: the input is zeros
                                   model.vision_goal(tokens, {**other, 'subgoal_mask': torch.zeros(b, cams,
                                                                                                   dtype=torch.bool)}))
    with pytest.raises(SystemExit, match='init-from'):   # nothing to widen: it would silently do nothing
        train_cli.main(['vla', *_common(root, profile_path, 'sg_bad'), *base, '--subgoal-goal-head', '--steps', '2'])
    with pytest.raises(SystemExit, match=r'\[0, 1\]'):
        train_cli.main(['vla', *_common(root, profile_path, 'sg_bad'), *base, '--init-from',
                        str(root / 'sg_base_export'), '--subgoal-goal-head', '--goal-head-only',
                        '--goal-pretrain-subgoal-prob', '1.5'])


def test_vla_transfer_from_another_embodiment(setup, tmp_path):
    """--transfer-from: another embodiment's VLA starts this one's (its backbone and image encoder, its text
    tokenizer); the layers sized by the state and the actions start fresh; the export is this embodiment's and the
    first loss is far below a fresh model's."""
    from pi07_policy.models.vla.configuration_vla import VLAConfig
    from pi07_policy.models.vla.modeling_vla import VLAModel
    root, profile_path = setup
    base = ['--steps', '60', '--batch-size', '8', '--lr', '1e-3', '--horizon', '6', '--no-ki', '--fast-weight', '0']
    if not (root / 'flow_only_export').is_dir():
        assert train_cli.main(['vla', *_common(root, profile_path, 'flow_only'), *base]) == 0
    fresh = [json.loads(x) for x in (root / 'flow_only' / 'history.jsonl').read_text().splitlines()]
    other = tmp_path / 'other_bot.yaml'
    other.write_text(profile_path.read_text().replace('testbot', 'otherbot'))
    convert([root / 'bags'], tmp_path / 'dataset', load_profile_spec(other), val_fraction=0.25, progress=False,
            log=lambda *_: None)
    args = ['vla', '--dataset', str(tmp_path / 'dataset'), '--profile', str(other), '--out', str(tmp_path / 'run'),
            '--export', str(tmp_path / 'export'), '--config', 'micro', '--workers', '0', '--plot-every', '0',
            '--save-every', '0', '--steps', '5', '--batch-size', '8', '--lr', '1e-4', '--horizon', '6', '--no-ki',
            '--fast-weight', '0', '--transfer-from', str(root / 'flow_only_export')]
    assert train_cli.main(args) == 0
    tuned = [json.loads(x) for x in (tmp_path / 'run' / 'history.jsonl').read_text().splitlines()]
    assert tuned[0]['flow_loss'] < 0.7 * fresh[0]['flow_loss'], (fresh[0], tuned[0])
    assert json.loads((tmp_path / 'export' / 'config.json').read_text())['embodiment'] == 'otherbot'
    assert (tmp_path / 'export' / 'text_tokenizer.json').read_text() == \
        (root / 'flow_only_export' / 'text_tokenizer.json').read_text()
    with pytest.raises(SystemExit, match='init-from'):
        train_cli.main(args + ['--init-from', str(root / 'flow_only_export')])
    # a robot with other state and action sizes: the backbone carries over, its own projections start fresh
    source = VLAModel(VLAConfig(state_dim=3, action_dim=3)).state_dict()
    own = VLAModel(VLAConfig(state_dim=7, action_dim=7)).state_dict()
    weights, kept_fresh = train_cli.fitting_weights(source, own)
    assert kept_fresh and all(own[k].shape != source[k].shape for k in kept_fresh if k in source)
    assert not any(k.startswith(('layers.', 'vision.')) for k in kept_fresh), kept_fresh
    assert all(torch.equal(weights[k], source[k]) for k in own if k not in kept_fresh)
    assert all(torch.equal(weights[k], own[k]) for k in kept_fresh)


def test_vla_fine_tunes_from_a_checkpoint(setup):
    """--init-from: the checkpoint's weights and processor, a fresh schedule (step 0), this command's knobs; the
    first loss is the trained model's, far below a fresh model's."""
    root, profile_path = setup
    base = ['--steps', '60', '--batch-size', '8', '--lr', '1e-3', '--horizon', '6', '--no-ki', '--fast-weight', '0']
    assert train_cli.main(['vla', *_common(root, profile_path, 'flow_only'), *base]) == 0
    fresh = [json.loads(x) for x in (root / 'flow_only' / 'history.jsonl').read_text().splitlines()]
    assert train_cli.main(['vla', *_common(root, profile_path, 'tuned'), '--steps', '10', '--batch-size', '8',
                           '--lr', '1e-4', '--horizon', '6', '--no-ki', '--fast-weight', '0', '--flow-samples', '2',
                           '--init-from', str(root / 'flow_only_export')]) == 0
    tuned = [json.loads(x) for x in (root / 'tuned' / 'history.jsonl').read_text().splitlines()]
    assert tuned[-1]['step'] == 10
    assert tuned[0]['flow_loss'] < 0.7 * fresh[0]['flow_loss'], (fresh[0], tuned[0])
    config = json.loads((root / 'tuned_export' / 'config.json').read_text())['config']
    assert config['flow_samples'] == 2 and config['fast_loss_weight'] == 0.0


def test_vla_fine_tune_keeps_the_checkpoints_prompt_rule_unless_told(setup, tmp_path):
    """A checkpoint from before `keep_subtask` (its prompt loses the end of its subtask when too long) keeps that
    rule through a fine-tune; --keep-subtask switches it. --unknown-place-prob trains on the relabelled samples."""
    root, profile_path = setup
    if not (root / 'flow_only_export').is_dir():
        assert train_cli.main(['vla', *_common(root, profile_path, 'flow_only'), '--steps', '60', '--batch-size', '8',
                               '--lr', '1e-3', '--horizon', '6', '--no-ki', '--fast-weight', '0']) == 0
    old = tmp_path / 'old_rule'
    shutil.copytree(root / 'flow_only_export', old)
    meta = json.loads((old / 'config.json').read_text())
    meta['config'].pop('keep_subtask')   # as written before the key existed
    (old / 'config.json').write_text(json.dumps(meta))
    tune = ['--steps', '3', '--batch-size', '8', '--lr', '1e-4', '--no-ki', '--fast-weight', '0',
            '--unknown-place-prob', '0.5', '--init-from', str(old)]
    for name, extra, expected in (('rule_kept', [], False), ('rule_switched', ['--keep-subtask'], True)):
        assert train_cli.main(['vla', *_common(root, profile_path, name), *tune, *extra]) == 0
        config = json.loads((root / f'{name}_export' / 'config.json').read_text())['config']
        assert config['keep_subtask'] is expected, name
    with pytest.raises(SystemExit, match='init-from'):   # a new model has the preset's rule: nothing to switch
        train_cli.main(['vla', *_common(root, profile_path, 'rule_new'), '--steps', '1', '--keep-subtask'])


def test_vla_fine_tunes_to_a_longer_chunk(setup):
    """--init-from with another --horizon: the weights carry over (rotary positions), the FAST tokenizer is fitted
    again for the new chunk length (or left out with --fast-weight 0), the export infers chunks of the new length;
    a later fine-tune without --horizon keeps the checkpoint's."""
    root, profile_path = setup
    if not (root / 'vla_export').is_dir():
        assert train_cli.main(['vla', *_common(root, profile_path, 'vla'), '--steps', '20', '--batch-size', '8',
                               '--horizon', '6']) == 0
    short = json.loads((root / 'vla_export' / 'fast_config.json').read_text())['config']
    assert short['horizon'] == 6
    assert train_cli.main(['vla', *_common(root, profile_path, 'h9'), '--steps', '3', '--batch-size', '8',
                           '--horizon', '9', '--init-from', str(root / 'vla_export')]) == 0
    config = json.loads((root / 'h9_export' / 'config.json').read_text())['config']
    assert config['action_horizon'] == 9 and config['fast_loss_weight'] > 0
    assert json.loads((root / 'h9_export' / 'fast_config.json').read_text())['config']['horizon'] == 9
    from pi07_policy.models.vla.policy import VLAPolicy
    policy = VLAPolicy.from_checkpoint(root / 'h9_export', expected_embodiment='testbot')
    out = policy.infer({'images': {c: np.zeros((16, 16, 3), np.uint8) for c in ('scene', 'wrist')},
                        'state': np.zeros(3, np.float32), 'task': 'put the red block in the bowl'})
    assert out['actions'].shape == (9, 3)

    assert train_cli.main(['vla', *_common(root, profile_path, 'h9_again'), '--steps', '2', '--batch-size', '8',
                           '--init-from', str(root / 'h9_export')]) == 0
    assert json.loads((root / 'h9_again' / 'summary.json').read_text())['horizon'] == 9
    assert train_cli.main(['vla', *_common(root, profile_path, 'h12_flow'), '--steps', '2', '--batch-size', '8',
                           '--horizon', '12', '--fast-weight', '0', '--init-from', str(root / 'vla_export')]) == 0
    assert not (root / 'h12_flow_export' / 'fast_config.json').exists()
    corrupt = root / 'corrupt_ckpt'
    corrupt.mkdir(exist_ok=True)
    (corrupt / 'config.json').write_text('{"config": {')   # a truncated file: named, before any data loads
    with pytest.raises(SystemExit, match='cannot read its chunk length'):
        train_cli.main(['vla', *_common(root, profile_path, 'h_corrupt'), '--steps', '1', '--init-from', str(corrupt)])
    with pytest.raises(SystemExit, match='--goal-head-only keep'):   # the model stays the checkpoint's: so does H
        train_cli.main(['vla', *_common(root, profile_path, 'h_bad'), '--steps', '1', '--horizon', '7',
                        '--goal-weight', '1', '--goal-head-only', '--init-from', str(root / 'h9_export')])
    assert json.loads((root / 'h12_flow_export' / 'config.json').read_text())['config']['action_horizon'] == 12


def test_high_level_and_world_model_subcommands(setup):
    root, profile_path = setup
    assert train_cli.main(['high_level', *_common(root, profile_path, 'hl'), '--steps', '10', '--batch-size', '4',
                           '--step-stride', '5']) == 0
    from pi07_policy.models.high_level import HighLevelPolicy
    hl = HighLevelPolicy.from_checkpoint(root / 'hl_export', expected_embodiment='testbot')
    assert hl.processor.camera_names == ('scene', 'wrist')
    assert train_cli.main(['world_model', *_common(root, profile_path, 'wm'), '--steps', '4', '--vae-steps', '4',
                           '--batch-size', '4', '--image-size', '16']) == 0
    from pi07_world_model.modeling_world_model import WorldModel
    wm = WorldModel.from_pretrained(root / 'wm_export')
    assert tuple(wm.config.camera_names) == ('scene', 'wrist')
    assert json.loads((root / 'wm_export' / 'config.json').read_text())['embodiment'] == 'testbot'


def test_world_model_open_loop_evaluation_on_a_datasets_held_out_split(setup, capsys):
    """`evaluation_world_model --dataset`: the held-out episodes of a converted dataset, with the copy baseline
    computed on those samples (the images of this dataset change brightness with the step, so a subgoal differs
    from its current frame)."""
    root, profile_path = setup
    if not (root / 'wm_export').is_dir():
        assert train_cli.main(['world_model', *_common(root, profile_path, 'wm'), '--steps', '4', '--vae-steps',
                               '4', '--batch-size', '4', '--image-size', '16']) == 0
    from pi07_world_model import evaluation_world_model
    capsys.readouterr()
    evaluation_world_model.main([str(root / 'wm_export'), '--dataset', str(root / 'dataset'), '--split', 'val',
                                 '--samples', '6'])
    report = json.loads(capsys.readouterr().out)
    assert report['samples'] == 6
    assert report['mse_copy_current'] > 0
    assert all(np.isfinite(report[k]) for k in ('mse_generated', 'mse_vae_reconstruction', 'mse_wrong_subtask'))
    with pytest.raises(ValueError, match="no episodes in split 'nope'"):
        evaluation_world_model.main([str(root / 'wm_export'), '--dataset', str(root / 'dataset'), '--split', 'nope'])


class _FakeTask:
    instruction = 'put the red block in the bowl'
    plan = ['pick up the red block', 'place the red block in the bowl']


class _FakeEnv:
    """Duck-typed TabletopEnv: succeeds once the first action dimension has been pushed above 1."""

    class action_spec:
        control_mode = 'joint'

    def __init__(self):
        self.task = _FakeTask()

    def reset(self, seed):
        self.time, self.x = 0.0, 0.0
        return self._obs()

    def _obs(self):
        return {'images': {c: np.zeros((16, 16, 3), np.uint8) for c in ('scene', 'wrist')},
                'state': np.array([self.x, 0, 0], np.float32), 'time': self.time}

    def step(self, action):
        self.time += 0.1
        self.x += 0.1
        return self._obs()

    def progress(self):
        return (int(self.x > 0.5) + int(self.x > 1.0), 2)

    def success(self):
        return self.x > 1.0

    def done(self):
        return self.success() or self.time >= 3.0


def test_rollout_loop_executes_chunks_and_reports():
    from pi07_policy.data.rollout import rollout, summarize

    class Policy:
        calls = 0

        def infer(self, obs):
            Policy.calls += 1
            assert obs['subtask'] in _FakeTask.plan and len(obs['memory_images']['scene']) == 6
            return {'actions': np.zeros((10, 3), np.float32), 'inference_ms': 1.0}

    results = rollout(Policy(), _FakeEnv(), [1, 2], execute_steps=4, use_memory=True, progress=False,
                      metadata={'quality': 5})
    assert [r['success'] for r in results] == [True, True] and results[0]['steps'] == 11
    assert Policy.calls == 2 * 3                                  # 11 steps, a new chunk every 4
    summary = summarize(results)
    assert summary['success_rate'] == 1.0 and summary['mean_progress'] == 1.0


def test_delta_actions_round_trip_and_rtc_prefix():
    """Delta dimensions are relative to the state inside the model and absolute outside, RTC prefix included."""
    from pi07_policy.models.vla.micro import micro
    from pi07_policy.models.vla.modeling_vla import VLAModel
    from pi07_policy.models.vla.policy import VLAPolicy
    from pi07_policy.models.vla.processing_vla import RobotSpec, VLAProcessor
    rng = np.random.default_rng(0)
    state = np.array([0.5, -1.0, 0.3], np.float32)
    samples = [{'state': rng.normal(size=3).astype(np.float32), 'actions': rng.normal(size=(10, 3)).astype(np.float32),
                'task': 't'} for _ in range(8)]
    cfg = micro(state_dim=3, action_dim=3)
    robot = RobotSpec(camera_names=('scene',), state_dim=3, action_dim=3, delta_action_mask=(True, True, False))
    proc = VLAProcessor.build(cfg, robot, samples, fit_fast=False)
    actions = rng.normal(size=(10, 3)).astype(np.float32)
    model_space = proc.actions_to_model(actions, state)
    np.testing.assert_allclose(proc.actions_from_model(model_space, state), actions, atol=1e-5)
    shifted = proc.actions_to_model(actions + np.array([1.0, 1.0, 0.0], np.float32), state + np.array([1, 1, 0.5]))
    np.testing.assert_allclose(shifted, model_space, atol=1e-5)       # only the relative part matters
    policy = VLAPolicy(VLAModel(cfg), proc)
    obs = {'images': {'scene': np.zeros((16, 16, 3), np.uint8)}, 'state': state}
    out = policy.infer({**obs, 'prev_actions': actions[:6], 'delay_steps': 2, 'mode': 'rtc'})
    np.testing.assert_array_equal(out['actions'][:2], actions[:2])


def test_rollout_split_over_jobs_gives_the_same_episodes(tmp_path):
    """`rollout --jobs 2` runs each episode with noise from its own seed: the same final states as one process,
    though each process runs other episodes before it."""
    from pathlib import Path

    from pi07_policy.data.rollout import main
    checkpoint = Path(__file__).resolve().parents[2] / 'pi07_bringup' / 'checkpoints' / 'sim_gantry' / 'vla'
    common = ['--checkpoint', str(checkpoint), '--embodiment', 'gantry', '--seeds', '10000', '10003',
              '--execute-steps', '2', '--max-time-s', '1.5']
    assert main(common + ['--out', str(tmp_path / 'one.json')]) == 0
    assert main(common + ['--jobs', '2', '--out', str(tmp_path / 'two.json')]) == 0
    one, two = (json.loads((tmp_path / f'{n}.json').read_text())['episodes'] for n in ('one', 'two'))
    assert [e['seed'] for e in two] == [10000, 10001, 10002]
    assert [e['final_state'] for e in one] == [e['final_state'] for e in two]
    assert one[0]['final_state'] != one[1]['final_state']           # the episodes did move, differently
    assert all(e['steps'] == 15 for e in one)


def test_world_model_subgoals_regenerate_on_a_new_subtask_and_every_period():
    from pi07_policy.data.rollout import WorldModelSubgoals
    calls = []

    def generate(observation, seed=None):
        calls.append((observation['subtask'], observation['images']['scene'][0, 0, 0]))
        assert observation['keyframe_images']['scene'][0, 0, 0] == 0   # the episode's first images, every time
        assert observation['task'] == 'put the red block in the bowl' and observation['metadata'] == {'quality': 5}
        return {'subgoal_images': {'scene': observation['images']['scene'] + 1}}

    subgoals = WorldModelSubgoals(generate, period_s=3.0)

    def obs(t):
        return {'time': t, 'images': {'scene': np.full((4, 4, 3), int(t * 10), np.uint8)}}

    task, meta = 'put the red block in the bowl', {'quality': 5}
    assert subgoals(obs(0.0), None, task, meta) is None and calls == []   # no subtask: nothing to imagine
    assert subgoals.keyframe['scene'][0, 0, 0] == 0                   # ... but the first images are kept
    first = subgoals(obs(0.0), 'pick up the red block', task, meta)
    assert first['scene'][0, 0, 0] == 1
    assert subgoals(obs(2.9), 'pick up the red block', task, meta) is first   # within the period: the same images
    subgoals(obs(3.0), 'pick up the red block', task, meta)            # the period is over: from the newest images
    subgoals(obs(3.5), 'place the red block in the bowl', task, meta)  # a new subtask: at once
    assert calls == [('pick up the red block', 0), ('pick up the red block', 30),
                     ('place the red block in the bowl', 35)]
    assert subgoals.generated == 3


def test_world_model_with_keyframes_through_training_evaluation_and_a_goal_head(setup, capsys):
    """`train world_model --keyframe`: the checkpoint reads keyframes (the episode's first frames); the open-loop
    evaluation adds the wrong-keyframe and no-keyframe rows and can keep one subtask's steps; a goal head that reads
    subgoal images is scored with the recorded ones and with the world model's."""
    root, profile_path = setup
    assert train_cli.main(['world_model', *_common(root, profile_path, 'wmk'), '--steps', '4', '--vae-steps', '4',
                           '--batch-size', '4', '--image-size', '16', '--keyframe', '--subgoal-end-prob', '1',
                           '--repeat', 'ep_1=2', '--text-tokens', '24', '--cut-prompt-tail']) == 0
    from pi07_world_model import evaluation_world_model
    from pi07_world_model.modeling_world_model import WorldModel
    config = WorldModel.from_pretrained(root / 'wmk_export').config
    # the shipped world models' text rule (train_checkpoints.sh pins it to regenerate them)
    assert config.reads_keyframe and config.text.max_tokens == 24 and not config.text.keep_subtask
    capsys.readouterr()
    evaluation_world_model.main([str(root / 'wmk_export'), '--dataset', str(root / 'dataset'), '--split', 'val',
                                 '--samples', '4', '--subtask-contains', 'place'])
    report = json.loads(capsys.readouterr().out)
    assert report['samples'] == 4 and np.isfinite(report['mse_wrong_keyframe']) and np.isfinite(
        report['mse_no_keyframe'])
    assert 0 <= report['pairs_wrong_subtask'] <= 4 and 0 <= report['pairs_wrong_keyframe'] <= 4
    with pytest.raises(ValueError, match='no samples of a subtask containing'):
        evaluation_world_model.main([str(root / 'wmk_export'), '--dataset', str(root / 'dataset'),
                                     '--subtask-contains', 'juggle'])
    with pytest.raises(SystemExit, match=r'\[0, 1\]'):
        train_cli.main(['world_model', *_common(root, profile_path, 'wmk_bad'), '--subgoal-end-prob', '2'])

    base = ['--horizon', '6', '--no-ki', '--goal-weight', '1', '--goal-conditioning', '--vision-goal-displacement']
    if not (root / 'sg_goal_export').is_dir():
        assert train_cli.main(['vla', *_common(root, profile_path, 'sg_base'), *base, '--steps', '2',
                               '--batch-size', '4']) == 0
        assert train_cli.main(['vla', *_common(root, profile_path, 'sg_goal'), *base, '--init-from',
                               str(root / 'sg_base_export'), '--subgoal-goal-head', '--goal-head-only',
                               '--steps', '4', '--goal-pretrain-batch-size', '8']) == 0
    errors = {}
    for source in ('none', 'recorded', 'world_model'):
        out = root / f'goal_{source}'
        extra = ['--world-model', str(root / 'wmk_export')] if source == 'world_model' else []
        assert evaluate_open_loop.main(['--checkpoint', str(root / 'sg_goal_export'), '--dataset',
                                        str(root / 'dataset'), '--goal', '--no-actions', '--goal-subgoals', source,
                                        *extra, '--out', str(out)]) == 0
        goal = json.loads((out / 'open_loop.json').read_text())['goal']
        assert goal['subgoals'] == source
        errors[source] = goal['mae']
    assert errors['recorded'] != errors['none'] and errors['world_model'] != errors['none']   # the head read them
    with pytest.raises(SystemExit):   # a world model's subgoals need the world model
        evaluate_open_loop.main(['--checkpoint', str(root / 'sg_goal_export'), '--dataset', str(root / 'dataset'),
                                 '--goal', '--no-actions', '--goal-subgoals', 'world_model'])
