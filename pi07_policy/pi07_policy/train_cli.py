"""``train``: train the pi07 models from a converted dataset (``convert``) for a robot profile.

    train vla         --dataset data/datasets/arm7 --profile sim_arm7 --out runs/arm7/vla --steps 3000
    train high_level  --dataset data/datasets/arm7 --profile sim_arm7 --out runs/arm7/high_level --steps 800
    train world_model --dataset data/datasets/arm7 --profile sim_arm7 --out runs/arm7/world_model --steps 1500

Each run writes, under --out: history.jsonl, loss.png (updated while training), checkpoint/ (weights +
optimizer state: `--resume` continues from it) and, with --export DIR, a clean checkpoint (no optimizer state)
that carries the profile's embodiment, cameras, state/action names and dimensions, ready for the ROS nodes.
Distributed (gloo on CPU, nccl on GPUs): `torchrun --nproc_per_node 2 -m pi07_policy.train_cli vla ...`.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from .data.convert import fit_stats
from .data.datasets import HighLevelDataset, VLADataset, WorldModelDataset, language_memory
from .data.profile_spec import ProfileSpec, load_profile_spec

# Smallest normalisation ranges (robot units): a dimension that barely moves in the data (e.g. a yaw that is
# almost constant) must not be blown up to huge normalised values by a near-zero range.
MIN_QUANTILE_RANGE = 0.02
MIN_STD = 0.005


def safe_norm_stats(stats: dict) -> dict:
    out = {}
    for key, s in stats.items():
        s = {k: np.asarray(v, np.float64) for k, v in s.items()}
        mid, half = (s['q01'] + s['q99']) / 2, np.maximum((s['q99'] - s['q01']) / 2, MIN_QUANTILE_RANGE / 2)
        out[key] = {'mean': s['mean'].tolist(), 'std': np.maximum(s['std'], MIN_STD).tolist(),
                    'q01': (mid - half).tolist(), 'q99': (mid + half).tolist()}
    return out


def check_dataset(dataset, profile: ProfileSpec) -> None:
    index = dataset.index
    problems = []
    if index['embodiment'] != profile.embodiment:
        problems.append(f"embodiment {index['embodiment']!r} vs profile {profile.embodiment!r}")
    if list(index['camera_names']) != list(profile.camera_names):
        problems.append(f"cameras {index['camera_names']} vs profile {list(profile.camera_names)}")
    if list(index['state_names']) != list(profile.state_names) or list(index['action_names']) != list(
            profile.action_names):
        problems.append('state/action names differ from the profile')
    if problems:
        raise SystemExit(f'dataset {dataset.root} does not match profile {profile.name}: ' + '; '.join(problems))


def dataset_texts(dataset) -> list[str]:
    """Every text a prompt can hold: instructions, subtasks, plans and the language-memory summaries."""
    texts = set(dataset.texts())
    for e in dataset.index['episodes']:
        subs = e.get('subtasks', [])
        texts.update(language_memory(subs[:j]) for j in range(1, len(subs) + 1))
    return sorted(texts)


def sample_chunks(dataset: VLADataset, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Up to n (action chunk (H, Da), state (Ds,)) pairs in robot units from the dataset, without touching images."""
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(dataset.items), size=min(n, len(dataset.items)), replace=False)
    chunks = np.stack([dataset.chunk(*dataset.items[i])[0] for i in picks])
    states = np.stack([np.asarray(dataset.arrays(dataset.items[i][0]).state[dataset.items[i][1]]) for i in picks])
    return chunks, states


def delta_action_mask(profile: ProfileSpec) -> tuple[bool, ...]:
    """Delta (relative to state) on every action dimension measured by the same state dimension, but grippers."""
    return tuple(i < profile.state_dim and profile.state_names[i] == name and 'gripper' not in name
                 for i, name in enumerate(profile.action_state_names))


def export_copy(model: torch.nn.Module, dtype: str) -> torch.nn.Module:
    """A copy of the model in the export dtype (float16 halves the shipped files; loading casts back to float32)."""
    import copy
    return copy.deepcopy(model).to({'float32': torch.float32, 'float16': torch.float16}[dtype]).eval()


def launcher_prefix(environ) -> list[str]:
    """How this process was started, for the command summary.json records: torchrun's ranks, or one process."""
    world_size = int(environ.get('WORLD_SIZE', '1'))
    if world_size > 1:
        return ['torchrun', f'--nproc_per_node={environ.get("LOCAL_WORLD_SIZE", world_size)}', '-m']
    return ['python', '-m']


def save_summary(out: Path, summary: dict, args) -> None:
    """summary.json: the run's figures, and the command and every option that made it (to rerun or extend it)."""
    out.mkdir(parents=True, exist_ok=True)
    summary = dict(summary, command=getattr(args, 'command', None),
                   args={k: v for k, v in vars(args).items() if k != 'command'})
    (out / 'summary.json').write_text(json.dumps(summary, indent=1, default=str))


# --------------------------------------------------------------------------------------------------- VLA
def vla_config(args, profile: ProfileSpec):
    from .models.vla.configuration_vla import PRESETS
    from .models.vla.micro import micro
    presets = {**PRESETS, 'micro': micro}
    cfg = presets[args.config]()
    vision = replace(cfg.vision, image_size=args.image_size) if args.image_size else cfg.vision
    if args.keypoint_stride:
        vision = replace(vision, keypoint_stride=args.keypoint_stride)
    if args.film_source:
        vision = replace(vision, film_source=args.film_source)
    return replace(cfg, vision=vision, action_horizon=args.horizon, goal_loss_weight=args.goal_weight,
                   state_dim=profile.state_dim,
                   action_dim=profile.action_dim, max_cameras=max(cfg.max_cameras, len(profile.camera_names)),
                   knowledge_insulation=not args.no_ki, fast_loss_weight=args.fast_weight,
                   flow_samples=args.flow_samples, goal_conditioning=args.goal_conditioning,
                   vision_goal_reads_state=not args.vision_goal_displacement,
                   goal_teacher_forcing=args.goal_teacher_forcing, goal_noise=args.goal_noise,
                   rtc_train_prob=args.rtc_train_prob, rtc_max_delay=args.rtc_max_delay,
                   rtc_prefix_noise=args.rtc_prefix_noise, memory_keeps_first_frame=args.memory_keyframe,
                   vision_goal_reads_memory=args.memory_keyframe, keyframe_encoder=args.keyframe_encoder)


def widen_goal_head_for_keyframe(weights: dict, config) -> dict:
    """The first layer of `vision_goal_head` of a VLA without `vision_goal_reads_memory`, widened for one with it:
    inputs [camera summaries | state?] -> [camera summaries | keyframe summaries | text condition | state?], the
    new columns zero (the widened head computes what the old one did until training moves them)."""
    key = 'vision_goal_head.0.weight'
    old = weights[key]                                                     # (2d, C*d [+ Ds])
    d, cams = config.decoder.hidden_size, config.max_cameras
    state_in = config.state_dim if config.vision_goal_reads_state else 0
    if old.shape[1] != cams * d + state_in:
        raise SystemExit(f'--memory-keyframe: {key} has {old.shape[1]} inputs, expected {cams * d + state_in}')
    new = old.new_zeros(old.shape[0], 2 * cams * d + d + state_in)
    new[:, :cams * d] = old[:, :cams * d]
    if state_in:
        new[:, -state_in:] = old[:, -state_in:]
    return {key: new}


def widen_goal_head_for_subgoal(weights: dict, config) -> dict:
    """The first layer of `vision_goal_head` of a VLA without `vision_goal_reads_subgoal`, widened for one with it:
    the subgoal images' summaries (max_cameras * D inputs) go in before the state's, at zero weight (the widened
    head computes what the old one did until training moves them); `subgoal_vision` starts as a copy of the image
    encoder (`vision`)."""
    key = 'vision_goal_head.0.weight'
    old = weights[key]
    d, cams = config.decoder.hidden_size, config.max_cameras
    state_in = config.state_dim if config.vision_goal_reads_state else 0
    views = old.shape[1] - state_in
    new = old.new_zeros(old.shape[0], old.shape[1] + cams * d)
    new[:, :views] = old[:, :views]
    if state_in:
        new[:, -state_in:] = old[:, -state_in:]
    encoder = {'subgoal_' + k: v for k, v in weights.items() if k.startswith('vision.')}
    return {key: new, **encoder}


def transfer_init(source: str, config, profile: ProfileSpec, dataset: VLADataset, seed: int, delta: bool = True):
    """Start from another embodiment's VLA (`train vla --transfer-from`), as one fine-tunes a base model on a new
    robot: every tensor whose name and shape fit this command's model (image encoder, backbone, the expert's
    layers) and the source's text tokenizer (its token ids are what those embeddings mean); the layers sized by
    the state and the actions (projections, goal heads), the FAST tokenizer and the normalisation start fresh from
    this dataset. -> (processor, initial weights)."""
    from .checkpoint import load_checkpoint
    from .models.common.text_tokenizer import load_text_tokenizer
    from .models.vla.configuration_vla import VLAConfig
    from .models.vla.modeling_vla import VLAModel
    from .models.vla.processing_vla import TEXT_TOKENIZER_FILE
    ckpt = load_checkpoint(source, VLAConfig.model_type, config_cls=VLAConfig)
    processor = build_vla_processor(config, profile, dataset, seed, delta=delta,
                                    text=load_text_tokenizer(ckpt.read_text(TEXT_TOKENIZER_FILE)))
    torch.manual_seed(seed)
    weights, fresh = fitting_weights(ckpt.state_dict, VLAModel(config).state_dict())
    if any(k.startswith(('layers.', 'embed_tokens.')) for k in fresh):   # its tokenizer needs its embeddings too
        raise SystemExit(f'--transfer-from {source}: its backbone or text embeddings do not fit this model '
                         '(another --config?)')
    print(f'transfer from {source} ({ckpt.embodiment}): {len(weights) - len(fresh)} of {len(weights)} tensors; '
          f'fresh: {", ".join(sorted({k.rsplit(".", 1)[0] for k in fresh}))}', flush=True)
    return processor, weights


def fitting_weights(source: dict, own: dict) -> tuple[dict, list[str]]:
    """`own` (a freshly initialised model's state dict) with every tensor of `source` of the same name and shape
    copied in. -> (weights, names kept fresh)."""
    weights = dict(own)
    fresh = [k for k, v in own.items() if k not in source or source[k].shape != v.shape]
    weights.update({k: source[k].clone() for k in own if k not in fresh})
    return weights, fresh


def build_vla_processor(config, profile: ProfileSpec, dataset: VLADataset, seed: int, delta: bool = True,
                        text=None):
    """Text tokenizer (dataset texts, unless `text` is given), FAST tokenizer and action statistics (sampled
    chunks, relative to the state on delta dimensions), state statistics (the dataset's)."""
    from .models.common.text_tokenizer import train_text_tokenizer
    from .models.vla.processing_vla import RobotSpec, VLAProcessor
    robot = RobotSpec(camera_names=tuple(profile.camera_names), state_dim=profile.state_dim,
                      action_dim=profile.action_dim, norm_mode='quantile', embodiment=profile.embodiment,
                      delta_action_mask=delta_action_mask(profile) if delta else ())
    if text is None:
        text = train_text_tokenizer(dataset_texts(dataset), vocab_size=config.text_vocab_size)
    bare = VLAProcessor(config, robot, text, None, None)
    chunks, states = sample_chunks(dataset, 4000, seed)
    relative = np.stack([bare.to_relative(c, s) for c, s in zip(chunks, states)])
    stats = safe_norm_stats({'state': dataset.norm_stats['state'],
                             'actions': fit_stats(relative.reshape(-1, relative.shape[-1]))})
    processor = VLAProcessor(config, robot, text, None, stats)
    if config.fast_loss_weight > 0:
        processor.fast_tokenizer = fit_fast_tokenizer(processor, dataset, seed, (chunks, states))
    return processor


def fit_fast_tokenizer(processor, dataset: VLADataset, seed: int, sampled=None):
    """The FAST tokenizer of the processor's chunk length, fitted on 2000 of the dataset's chunks (relative to the
    state on delta dimensions, as the processor encodes them)."""
    from .models.fast import FASTConfig, FASTTokenizer
    chunks, states = sampled if sampled is not None else sample_chunks(dataset, 2000, seed)
    relative = np.stack([processor.to_relative(c, s) for c, s in zip(chunks[:2000], states[:2000])])
    config = processor.config
    return FASTTokenizer.fit(relative, FASTConfig(horizon=config.action_horizon, action_dim=config.action_dim,
                                                  vocab_size=config.fast_vocab_size))


def resolve_horizon(horizon: int | None, checkpoint: str | Path | None) -> int:
    """--horizon, else the chunk length of the checkpoint training starts from (resume or --init-from), else 10."""
    if horizon is not None:
        return horizon
    if checkpoint is not None:
        config = Path(checkpoint) / 'config.json'
        if config.is_file():
            try:
                return int(json.loads(config.read_text())['config']['action_horizon'])
            except (ValueError, KeyError, TypeError) as exc:   # before the dataset loads: a clear error, at once
                raise SystemExit(f'{checkpoint}: cannot read its chunk length from config.json '
                                 f'({type(exc).__name__}: {exc}); give --horizon or a valid checkpoint') from exc
    return 10


def add_repeat_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--repeat', nargs='+', default=None, metavar='NAME=K',
                        help='the steps of episodes whose name contains NAME appear K times per epoch (e.g. '
                             'restore_layout=3: a family that is one episode in five gets more of the batches)')


def parse_repeat(pairs: list[str] | None) -> dict[str, int] | None:
    """['restore_layout=3'] -> {'restore_layout': 3}."""
    if not pairs:
        return None
    out = {}
    for pair in pairs:
        name, sep, count = pair.rpartition('=')
        if not sep or not name or not count.isdigit() or int(count) < 1:
            raise SystemExit(f'--repeat {pair!r}: expected NAME=K with K >= 1 (e.g. restore_layout=3)')
        out[name] = int(count)
    return out


def run_vla(args, profile: ProfileSpec) -> dict:
    from .models.vla.policy import VLAPolicy
    from .models.vla.processing_vla import VLAProcessor
    from .models.vla.train import train_vla
    from .training import TrainConfig, dist_info

    out = Path(args.out)
    resume = out / 'checkpoint' if args.resume and (out / 'checkpoint' / 'config.json').is_file() else None
    args.horizon = resolve_horizon(args.horizon, resume or args.init_from)
    kept = resume or (args.init_from if args.goal_head_only else None)   # runs that keep the checkpoint's model
    if kept is not None and args.horizon != resolve_horizon(None, kept):
        raise SystemExit(f'--horizon {args.horizon}: {kept} has chunks of {resolve_horizon(None, kept)} rows, which '
                         '--resume and --goal-head-only keep (a new length: --init-from without --goal-head-only)')
    dataset = VLADataset(args.dataset, 'train', horizon=args.horizon, subgoal_prob=args.subgoal_prob,
                         memory_prob=args.memory_prob, image_shift=args.image_shift, include=args.include,
                         memory_keep_first=args.memory_keyframe, repeat=parse_repeat(args.repeat),
                         # --goal-head-only trains on the goal samples below: no pause scan for unused action samples
                         idle_tolerance=0.0 if args.goal_head_only else args.idle_tolerance,
                         extras_per_batch=args.batch_size if args.extras_per_batch else 0,
                         unknown_place_prob=args.unknown_place_prob)
    check_dataset(dataset, profile)
    if args.transfer_from and (args.init_from or args.goal_head_only):
        raise SystemExit('--transfer-from starts a new embodiment\'s VLA: not with --init-from or --goal-head-only')
    if args.keep_subtask and args.init_from is None:   # new models take the preset's rule, resumed ones keep theirs
        raise SystemExit('--keep-subtask switches the prompt rule of the checkpoint a fine-tune starts from: give '
                         '--init-from')
    if args.subgoal_goal_head and (args.init_from is None or resume is not None):
        raise SystemExit('--subgoal-goal-head widens a trained VLA\'s goal head: give --init-from, not --resume')
    if not 0 <= args.goal_pretrain_subgoal_prob <= 1:
        raise SystemExit(f'--goal-pretrain-subgoal-prob must be in [0, 1], got {args.goal_pretrain_subgoal_prob}')
    config = vla_config(args, profile)
    init_weights = None
    if resume is not None or args.init_from:
        from .checkpoint import load_checkpoint
        from .models.vla.configuration_vla import VLAConfig
        ckpt = load_checkpoint(resume or args.init_from, VLAConfig.model_type, config_cls=VLAConfig,
                               expected_embodiment=profile.embodiment)
        if resume is not None:
            config = ckpt.config
        elif args.goal_head_only:   # only the goal loss trains: the checkpoint's config stays whole (its RTC, ...)
            config = ckpt.config
        else:   # fine-tuning: the checkpoint's model and processor, this command's training knobs
            config = replace(ckpt.config, knowledge_insulation=config.knowledge_insulation,
                             fast_loss_weight=config.fast_loss_weight if ckpt.has('fast_tokenizer.json') else 0.0,
                             flow_samples=config.flow_samples, dropout=ckpt.config.dropout,
                             rtc_train_prob=config.rtc_train_prob, rtc_max_delay=config.rtc_max_delay,
                             rtc_prefix_noise=config.rtc_prefix_noise, action_horizon=config.action_horizon,
                             keep_subtask=ckpt.config.keep_subtask or args.keep_subtask)
        if resume is None:
            init_weights = dict(ckpt.state_dict)
            if args.memory_keyframe and not config.vision_goal_reads_memory and not args.goal_head_only:
                # adding the memory keyframe to a VLA trained without it: its goal head gains the keyframe's and the
                # text condition's inputs, at zero weight, so the fine-tune starts from the same function
                config = replace(config, memory_keeps_first_frame=True, vision_goal_reads_memory=True)
                init_weights.update(widen_goal_head_for_keyframe(init_weights, config))
            if args.subgoal_goal_head and not config.vision_goal_reads_subgoal:
                if not config.goal_loss_weight > 0:
                    raise SystemExit(f'--subgoal-goal-head: {args.init_from} has no goal heads (--goal-weight)')
                init_weights.update(widen_goal_head_for_subgoal(init_weights, config))
                config = replace(config, vision_goal_reads_subgoal=True)
            if args.keyframe_encoder and not config.keyframe_encoder:
                if not config.vision_goal_reads_memory:
                    raise SystemExit(f'--keyframe-encoder: {args.init_from} was not trained with --memory-keyframe')
                # the keyframe's own encoder starts as the image encoder the goal head was trained with
                config = replace(config, keyframe_encoder=True)
                init_weights.update({'keyframe_' + k: v for k, v in ckpt.state_dict.items() if k.startswith('vision.')})
        processor = VLAProcessor.from_checkpoint(ckpt, config)
        if config.action_horizon != ckpt.config.action_horizon and processor.fast_tokenizer is not None:
            # a longer (or shorter) chunk: the action expert's positions are rotary, so its weights carry over, and
            # the action statistics stay the model's; the FAST tokenizer compresses whole chunks, so it is fitted
            # again (its tokens mean new things: --fast-weight 0 leaves it out, the backbone undisturbed)
            processor.fast_tokenizer = (fit_fast_tokenizer(processor, dataset, args.seed)
                                        if config.fast_loss_weight > 0 else None)
    elif args.transfer_from:
        processor, init_weights = transfer_init(args.transfer_from, config, profile, dataset, args.seed,
                                                delta=not args.absolute_actions)
    else:
        processor = build_vla_processor(config, profile, dataset, args.seed, delta=not args.absolute_actions)
    tc = TrainConfig(batch_size=args.batch_size, lr=args.lr, seed=args.seed, num_workers=args.workers,
                     warmup_steps=min(100, args.steps // 10), plot_every=args.plot_every,
                     save_every=args.save_every, log_every=args.log_every)
    pretrain = {}
    if args.goal_head_only and (args.init_from is None or resume is not None):
        raise SystemExit('--goal-head-only fine-tunes the goal head of a trained VLA: give --init-from, not --resume')
    if (args.goal_pretrain_steps > 0 or args.goal_head_only) and resume is None:
        if not config.goal_loss_weight > 0:
            raise SystemExit('--goal-pretrain-steps needs --goal-weight > 0 (the goal heads)')
        pretrain = {'goal_pretrain_dataset': VLADataset(
                        args.dataset, 'train', horizon=args.horizon, image_shift=args.image_shift, include=args.include,
                        with_actions=False, segment_start_fraction=args.goal_pretrain_fraction,
                        # the keyframe head learns to read the first frame where it is given, as in the VLA's steps
                        memory_prob=args.goal_pretrain_memory_prob if config.vision_goal_reads_memory else 0.0,
                        memory_keep_first=config.memory_keeps_first_frame, memory_frames=1,
                        # the subgoal head reads the frame where the subtask is done: the goal's own state
                        subgoal_prob=args.goal_pretrain_subgoal_prob if config.vision_goal_reads_subgoal else 0.0,
                        subgoal_end_prob=1.0,
                        hindsight_return_prob=args.hindsight_return_prob,
                        hindsight_return_dims=args.hindsight_return_dims, repeat=parse_repeat(args.repeat),
                        unknown_place_prob=args.unknown_place_prob),
                    'goal_pretrain_steps': args.goal_pretrain_steps,
                    'goal_pretrain_config': replace(tc, batch_size=args.goal_pretrain_batch_size,
                                                    lr=args.goal_pretrain_lr, warmup_steps=50, plot_every=0)}
    policy, result = train_vla(dataset, config, out, args.steps, robot=processor.robot, processor=processor,
                               train_config=tc, resume_from=resume, profile=profile.path, init_weights=init_weights,
                               encoder_lr_scale=args.encoder_lr_scale, goal_head_only=args.goal_head_only, **pretrain)
    summary = {'model': 'vla', 'steps': result.step, 'seconds': round(result.seconds, 1),
               'loss_first': result.first('loss'), 'loss_last': result.last('loss'),
               'config': args.config, 'horizon': args.horizon, 'goal_head_only': args.goal_head_only,
               'image_size': config.vision.image_size,
               'train_samples': len(pretrain['goal_pretrain_dataset'] if args.goal_head_only else dataset)}
    if not args.goal_head_only:
        summary['flow_loss_last'] = result.last('flow_loss')
    if result.pretrain is not None:
        summary.update({'goal_pretrain_steps': result.pretrain.step, 'goal_pretrain_seconds': round(
            result.pretrain.seconds, 1), 'goal_pretrain_loss_first': result.pretrain.first('loss'),
            'goal_pretrain_loss_last': result.pretrain.last('loss')})
    if dist_info().is_main:
        val = validation_losses(policy, args.dataset, args.horizon, args.seed, include=args.include)
        summary.update({f'val_{k}': v for k, v in val.items()})
        if args.export:
            VLAPolicy(export_copy(policy.model, args.export_dtype), processor).save(args.export, profile=profile.path)
            summary['export'] = str(args.export)
        save_summary(out, summary, args)
    return summary


@torch.no_grad()
def validation_losses(policy, root, horizon: int, seed: int, batches: int = 8, batch_size: int = 16,
                      include: list[str] | None = None) -> dict[str, float]:
    """Flow-matching loss (and the goal-state loss, if the model has a goal head) on the val split, without
    prompt dropout and with a fixed noise seed: a held-out learning-curve point. Empty without a val split."""
    try:
        val = VLADataset(root, 'val', horizon=horizon, include=include)
    except ValueError:
        return {}
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    model = policy.model.eval()
    rows = []
    for _ in range(batches):
        idx = rng.choice(len(val), size=min(batch_size, len(val)), replace=False)
        batch = policy.processor.collate([val[int(i)] for i in idx])
        batch.pop('fast_ids', None)
        rows.append({k: float(v) for k, v in model(batch).items() if k in ('flow_loss', 'goal_loss')})
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


# --------------------------------------------------------------------------------------------------- high level
def run_high_level(args, profile: ProfileSpec) -> dict:
    from .models.high_level import PRESETS, HighLevelPolicy, HighLevelProcessor, train_high_level
    from .training import TrainConfig, dist_info

    dataset = HighLevelDataset(args.dataset, 'train', step_stride=args.step_stride, image_shift=args.image_shift,
                               include=args.include, history_lag_prob=args.history_lag_prob)
    check_dataset(dataset, profile)
    cfg = PRESETS[args.config]()
    if args.image_size:
        cfg = replace(cfg, vision=replace(cfg.vision, image_size=args.image_size))
    out = Path(args.out)
    resume = out / 'checkpoint' if args.resume and (out / 'checkpoint' / 'config.json').is_file() else None
    if resume is not None:
        from .checkpoint import load_checkpoint
        from .models.high_level import HighLevelConfig
        ckpt = load_checkpoint(resume, HighLevelConfig.model_type, config_cls=HighLevelConfig)
        cfg, processor = ckpt.config, HighLevelProcessor.from_checkpoint(ckpt, ckpt.config)
    else:
        processor = HighLevelProcessor.build(cfg, corpus=dataset_texts(dataset),
                                             camera_names=tuple(profile.camera_names))
    tc = TrainConfig(batch_size=args.batch_size, lr=args.lr, seed=args.seed, num_workers=args.workers,
                     warmup_steps=min(100, args.steps // 10), plot_every=args.plot_every,
                     save_every=args.save_every, log_every=args.log_every)
    policy, result = train_high_level(dataset, cfg, out, args.steps, processor=processor, train_config=tc,
                                      resume_from=resume, embodiment=profile.embodiment)
    summary = {'model': 'high_level', 'steps': result.step, 'seconds': round(result.seconds, 1),
               'loss_first': result.first('loss'), 'loss_last': result.last('loss'), 'config': args.config,
               'train_samples': len(dataset)}
    if dist_info().is_main:
        summary.update(high_level_accuracy(policy, args.dataset))
        if args.export:
            HighLevelPolicy(export_copy(policy.model, args.export_dtype), policy.processor).save(
                args.export, profile=profile.path, embodiment=profile.embodiment)
            summary['export'] = str(args.export)
        save_summary(out, summary, args)
    return summary


def high_level_accuracy(policy, root, n: int = 40, seed: int = 0) -> dict:
    """Exact-match rate of decoded subtasks / <done> on the val split (greedy)."""
    try:
        val = HighLevelDataset(root, 'val', step_stride=5, memory_repeat=1)
    except ValueError:
        return {}
    rng = np.random.default_rng(seed)
    idx = [int(i) for i in rng.choice(len(val), size=min(n, len(val)), replace=False)]
    hits = total = 0
    for i in idx:
        s = val[i]
        if 'updated_memory' in s:
            pred = policy.update_memory(s)['memory']
            hits += pred == s['updated_memory']
        else:
            out = policy.infer(s)
            hits += (out['task_done'] if s.get('task_done') else out['subtask'] == s['next_subtask'])
        total += 1
    return {'val_exact_match': hits / max(total, 1), 'val_samples': total}


# --------------------------------------------------------------------------------------------------- world model
def run_world_model(args, profile: ProfileSpec) -> dict:
    from pi07_world_model.configuration_world_model import CONFIGS
    from pi07_world_model.training_world_model import WorldModelTrainConfig, train_world_model

    from .training import dist_info

    if not 0 <= args.subgoal_end_prob <= 1:
        raise SystemExit(f'--subgoal-end-prob must be in [0, 1], got {args.subgoal_end_prob}')
    dataset = WorldModelDataset(args.dataset, 'train', subgoal_ahead_s=args.subgoal_ahead_s,
                                subgoal_end_prob=args.subgoal_end_prob,
                                image_shift=args.image_shift, include=args.include, keyframe=args.keyframe,
                                repeat=parse_repeat(args.repeat))
    check_dataset(dataset, profile)
    factory = CONFIGS[args.config]
    cfg = factory()
    cfg = replace(cfg, camera_names=tuple(profile.camera_names), reads_keyframe=args.keyframe)
    if args.image_size:
        cfg = replace(cfg, image_size=args.image_size)
    if args.text_tokens or args.cut_prompt_tail:
        cfg = replace(cfg, text=replace(cfg.text, max_tokens=args.text_tokens or cfg.text.max_tokens,
                                        keep_subtask=not args.cut_prompt_tail))
    tc = WorldModelTrainConfig(vae_steps=args.vae_steps, flow_steps=args.steps, batch_size=args.batch_size,
                               flow_lr=args.lr, seed=args.seed, plot_every=args.plot_every, log_every=args.log_every,
                               save_every=args.save_every)
    t0 = time.monotonic()
    model = train_world_model(dataset, cfg, args.out, train_config=tc, texts=dataset_texts(dataset),
                              resume=args.resume)
    summary = {'model': 'world_model', 'vae_steps': args.vae_steps, 'flow_steps': args.steps,
               'seconds': round(time.monotonic() - t0, 1), 'config': args.config, 'train_samples': len(dataset)}
    out = Path(args.out)
    for stage in ('vae', 'flow'):
        hist = out / stage / 'history.jsonl'
        if hist.is_file():
            rows = [json.loads(line) for line in hist.read_text().splitlines() if line.strip()]
            if rows:
                summary[f'{stage}_loss_first'], summary[f'{stage}_loss_last'] = rows[0]['loss'], rows[-1]['loss']
    if dist_info().is_main:
        if args.export:
            export_copy(model, args.export_dtype).save_pretrained(args.export, embodiment=profile.embodiment,
                                                                  profile=profile.path)
            summary['export'] = str(args.export)
        save_summary(out, summary, args)
    return summary


# --------------------------------------------------------------------------------------------------- command line
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='train', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest='model', required=True)

    def common(p, steps, batch, lr, config, choices, image_shift=4, shift_help=''):
        p.add_argument('--dataset', required=True, help='dataset directory made by `convert`')
        p.add_argument('--profile', required=True, help='robot profile name (sim_arm7) or YAML path')
        p.add_argument('--out', required=True, help='run directory (history, loss.png, checkpoint/)')
        p.add_argument('--export', default=None, help='also write a clean checkpoint (no optimizer state) here')
        p.add_argument('--export-dtype', default='float16', choices=['float16', 'float32'],
                       help='weights dtype of the exported checkpoint (loading casts to float32)')
        p.add_argument('--config', default=config, choices=choices, help='model size preset')
        p.add_argument('--steps', type=int, default=steps)
        p.add_argument('--batch-size', type=int, default=batch)
        p.add_argument('--lr', type=float, default=lr)
        p.add_argument('--seed', type=int, default=0)
        p.add_argument('--image-size', type=int, default=0, help='px the model sees (0: the preset\'s)')
        p.add_argument('--image-shift', type=int, default=image_shift,
                       help='random-shift augmentation, px of the stored images (0: off)' + shift_help)
        p.add_argument('--workers', type=int, default=1, help='DataLoader worker processes')
        p.add_argument('--threads', type=int, default=1, help='torch threads of the training process')
        p.add_argument('--resume', action='store_true', help='continue from <out>/checkpoint if present')
        p.add_argument('--include', nargs='*', default=None,
                       help='only episodes whose name contains one of these (e.g. ordered_place)')
        p.add_argument('--log-every', type=int, default=10)
        p.add_argument('--plot-every', type=int, default=100)
        p.add_argument('--save-every', type=int, default=500)

    p = sub.add_parser('vla', help='the VLA (flow matching + FAST with Knowledge Insulation)')
    # A fixed scene camera maps pixels to table positions: shifting its images moves every object by up to the
    # shift, so the policy cannot tell where a block is to better than that (docs/data.md: 4 px left the goal head
    # 7 cm off where 0 px reached 1.8 cm). Off for the VLA; the high-level decoder and world model keep it.
    common(p, 2000, 16, 3e-4, 'tiny', ['micro', 'tiny', 'tiny_conv', 'small'], image_shift=0,
           shift_help='; off by default: a shifted fixed camera no longer says where objects are')
    p.add_argument('--horizon', type=int, default=None,
                   help='action chunk length H (steps at the control rate); default: the checkpoint\'s with --resume '
                        'or --init-from (a different H fine-tunes the model to longer or shorter chunks), else 10')
    p.add_argument('--subgoal-prob', type=float, default=0.3, help='fraction of samples given a subgoal image')
    p.add_argument('--memory-prob', type=float, default=0.3, help='fraction of samples given memory frames')
    p.add_argument('--absolute-actions', action='store_true',
                   help='predict absolute targets (default: joints/axes relative to the current state)')
    p.add_argument('--init-from', default=None,
                   help='fine-tune: start from this VLA checkpoint (weights, tokenizers, normalisation), new schedule')
    p.add_argument('--transfer-from', default=None,
                   help='start from another embodiment\'s VLA checkpoint: the tensors that fit this model and its '
                        'text tokenizer; state/action-sized layers, FAST tokenizer and normalisation start fresh')
    p.add_argument('--no-ki', action='store_true', help='pi0-style joint training: the flow loss reaches the backbone')
    p.add_argument('--fast-weight', type=float, default=1.0, help='weight of the FAST cross-entropy (0: flow only)')
    p.add_argument('--flow-samples', type=int, default=1,
                   help='noise/time draws per sample, sharing one backbone pass (cheap variance reduction)')
    p.add_argument('--goal-weight', type=float, default=0.0,
                   help='weight of the auxiliary goal-state loss (joint state where the subtask ends; 0: no head)')
    p.add_argument('--goal-conditioning', action='store_true',
                   help='the expert also reads the image encoder\'s goal prediction (needs --goal-weight)')
    p.add_argument('--goal-teacher-forcing', type=float, default=0.5,
                   help='--goal-conditioning: fraction of training samples whose expert is given the true goal '
                        '(plus --goal-noise) instead of the head\'s estimate')
    p.add_argument('--goal-noise', type=float, default=0.1,
                   help='--goal-conditioning: std of the noise on the teacher-forced goal, normalised units '
                        '(smaller: the expert follows the goal more closely)')
    p.add_argument('--vision-goal-displacement', action='store_true',
                   help='the image encoder\'s goal head predicts the displacement to the goal from the images '
                        'alone (default: the goal, from the images and the state; needs --goal-weight)')
    p.add_argument('--rtc-train-prob', type=float, default=0.0,
                   help='training-time RTC: fraction of samples whose first d action rows are given clean (as the '
                        'rows executed during the inference delay) and not trained on; RTC then joins chunks by '
                        'conditioning on them instead of by guidance (0: off)')
    p.add_argument('--rtc-max-delay', type=int, default=6,
                   help='training-time RTC: d is drawn from 1..this (rows; must be below --horizon)')
    p.add_argument('--rtc-prefix-noise', type=float, default=0.0,
                   help='training-time RTC: the frozen rows are given off course by a heading error growing to '
                        'this std (normalised units) at their last row; the rows after keep the demonstration\'s')
    p.add_argument('--goal-pretrain-steps', type=int, default=0,
                   help='first train the image encoder alone on the goal state, this many steps (needs --goal-weight)')
    p.add_argument('--idle-tolerance', type=float, default=0.0,
                   help='leave out the steps inside pauses (state and command change less than this per step, '
                        'robot units; 0: keep every step): a policy trained on them can stall in the pause')
    p.add_argument('--goal-pretrain-fraction', type=float, default=0.3,
                   help='goal pretraining samples: the first fraction of each subtask segment')
    p.add_argument('--memory-keyframe', action='store_true',
                   help="memory's oldest slot holds the episode's first frame and the image encoder's goal head reads "
                        'it (MEM keyframe; the tasks whose goal only the start shows: restore_layout)')
    p.add_argument('--goal-pretrain-memory-prob', type=float, default=0.7,
                   help='with --memory-keyframe: fraction of goal-pretraining samples given the keyframe')
    p.add_argument('--keyframe-encoder', action='store_true',
                   help='with --memory-keyframe: the keyframe gets its own copy of the image encoder, used by the goal '
                        'head only (with --init-from a VLA without one, a copy of its image encoder)')
    p.add_argument('--subgoal-goal-head', action='store_true',
                   help='with --init-from: the goal head also reads the subgoal images (the frame where the subtask is '
                        'done shows the goal), through their own copy of the image encoder; train it with '
                        '--goal-head-only (docs/evaluation.md, session 21)')
    p.add_argument('--goal-pretrain-subgoal-prob', type=float, default=0.5,
                   help='with --subgoal-goal-head: fraction of goal samples given the subgoal image of their subtask '
                        'done')
    p.add_argument('--goal-head-only', action='store_true',
                   help='with --init-from: train only the image-encoder goal estimate\'s own parts (its head, the '
                        'keyframe and subgoal encoders) for --steps steps on the goal-pretraining samples, at '
                        '--goal-pretrain-lr and --goal-pretrain-batch-size; what the backbone and the expert read does '
                        'not change')
    p.add_argument('--unknown-place-prob', type=float, default=0.0,
                   help='fraction of place samples whose target is said in random letters (the task too), with the '
                        'subgoal image of the subtask done: the VLA learns to take the spot from a subgoal image where '
                        'the words do not say it (a world model\'s subgoal for a task the VLA never read)')
    p.add_argument('--keep-subtask', action='store_true',
                   help='with --init-from: a prompt too long loses the end of its task, not its subtask (the presets\' '
                        'rule; checkpoints from before it keep theirs unless this is given)')
    p.add_argument('--hindsight-return-prob', type=float, default=0.0,
                   help='goal samples: the fraction, among those after an object\'s pick, relabelled "put the <object> '
                        'block back where it was" with the keyframe and the end of that pick as the goal')
    p.add_argument('--hindsight-return-dims', type=int, nargs='+', default=None,
                   help='state dimensions a hindsight goal supervises (default all; the gantry: 0 1, x and y)')
    add_repeat_option(p)
    p.add_argument('--goal-pretrain-batch-size', type=int, default=64)
    p.add_argument('--goal-pretrain-lr', type=float, default=1e-3)
    p.add_argument('--extras-per-batch', action='store_true',
                   help='one subgoal / memory coin per batch instead of per sample: the prompt is padded to the '
                        'batch\'s longest, so per sample nearly every batch pays for them (a step 0.73 -> 0.61 s)')
    p.add_argument('--encoder-lr-scale', type=float, default=1.0,
                   help='LR multiplier for the image-encoder parts that goal pretraining (or --init-from) trained; '
                        'its one run (0.1) did worse, as FiLM\'s inputs keep training at the full rate (docs/data.md). '
                        'Pass the same value on --resume')
    p.add_argument('--keypoint-stride', type=int, default=0,
                   help='conv encoder: px per keypoint-map cell, a power of 2 (0: the preset\'s)')
    p.add_argument('--film-source', default=None, choices=['prompt', 'subtask'],
                   help='conv encoder: which prompt tokens FiLM reads (default: the preset\'s)')
    p = sub.add_parser('high_level', help='the high-level subtask / language-memory decoder')
    common(p, 800, 16, 5e-4, 'tiny', ['micro', 'tiny', 'small'])
    p.add_argument('--step-stride', type=int, default=3, help='use every n-th step of each episode')
    p.add_argument('--history-lag-prob', type=float, default=0.5,
                   help='fraction of samples whose history lacks the last finished subtask (the images must show '
                        'it done, as in closed loop when a subtask has just ended)')
    p = sub.add_parser('world_model', help='the subgoal-image world model (VAE, then latent flow)')
    common(p, 1500, 16, 1e-3, 'tiny', ['micro', 'tiny'])
    p.add_argument('--vae-steps', type=int, default=600)
    p.add_argument('--subgoal-ahead-s', type=float, default=3.0)
    p.add_argument('--subgoal-end-prob', type=float, default=0.5,
                   help='fraction of samples whose subgoal is the frame where the subtask is done (the rest: '
                        '--subgoal-ahead-s ahead, or the subtask\'s end if sooner); 1: always the subtask done, the '
                        'target a VLA goal head trained with --subgoal-goal-head reads')
    add_repeat_option(p)
    p.add_argument('--keyframe', action='store_true',
                   help='the model also reads each camera\'s first frame of the task (the memory node\'s keyframe), '
                        'so it can draw a place only that frame shows ("put it back where it was")')
    p.add_argument('--text-tokens', type=int, default=0,
                   help='tokens of "Task: ... Subtask: ..." the text encoder reads (0: the preset\'s, 48); a longer '
                        'prompt loses the end of its task, never its subtask')
    p.add_argument('--cut-prompt-tail', action='store_true',
                   help='the rule before session 26, to regenerate the world models trained with it: a prompt too '
                        'long loses its end, subtask first (with 24 tokens, every subtask of the sim\'s tasks)')
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.command = shlex.join([*launcher_prefix(os.environ), 'pi07_policy.train_cli', *argv])
    torch.set_num_threads(args.threads)
    from .training import cleanup_distributed, init_distributed
    init_distributed()
    try:
        profile = load_profile_spec(args.profile)
        run = {'vla': run_vla, 'high_level': run_high_level, 'world_model': run_world_model}[args.model]
        summary = run(args, profile)
        print(json.dumps(summary))
    finally:
        cleanup_distributed()
    return 0


if __name__ == '__main__':
    sys.exit(main())
