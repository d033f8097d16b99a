"""Training entry point for the VLA: any torch Dataset of sample dicts (observation keys of the policy boundary
+ 'actions' (H', D) robot units, optional 'action_mask' (H',)) -> a checkpoint directory.

    policy, result = train_vla(dataset, tiny(), 'runs/vla', steps=2000, robot=RobotSpec(...))

The processor (text tokenizer, FAST tokenizer, normalisation statistics) is fitted on up to `fit_samples`
samples first and saved in every checkpoint with the weights. Distributed: call it under torchrun after
`init_distributed()` (pi07_policy.training); each rank fits the same processor (deterministic) on the same data.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

from torch import nn
from torch.utils.data import Dataset

from ...checkpoint import load_checkpoint, save_checkpoint
from ...training import TrainConfig, TrainResult, train
from .configuration_vla import VLAConfig
from .modeling_vla import VLAModel
from .policy import VLAPolicy
from .processing_vla import RobotSpec, VLAProcessor


def train_vla(dataset: Dataset, config: VLAConfig, out_dir: str | Path | None, steps: int, *,
              robot: RobotSpec | None = None, processor: VLAProcessor | None = None,
              train_config: TrainConfig | None = None, corpus: Iterable[str] = (), fit_samples: int = 2000,
              resume_from: str | Path | None = None, profile: str | Path | None = None,
              init_weights: dict | None = None, goal_pretrain_dataset: Dataset | None = None,
              goal_pretrain_steps: int = 0, goal_pretrain_config: TrainConfig | None = None,
              encoder_lr_scale: float = 1.0, goal_head_only: bool = False,
              **train_overrides) -> tuple[VLAPolicy, TrainResult]:
    """`init_weights`: start from these weights (fine-tuning; a fresh optimizer and schedule), not at random.
    `goal_pretrain_*`: first train the image encoder alone on the goal-state target (`VLAModel.vision_goal_loss`,
    config.goal_loss_weight > 0) for that many steps on that dataset; skipped when resuming. `result.pretrain`
    holds that stage's TrainResult. `encoder_lr_scale`: LR multiplier, in the VLA stage, for the image-encoder
    parts that goal pretraining (or the `init_weights` checkpoint) trained (`VLAModel.pretrained_encoder_prefixes`).
    Meant to keep the pretrained localisation; its one run at 0.1 did worse (docs/data.md, session 8).
    `goal_head_only`: train, for `steps` steps on `goal_pretrain_dataset` with `goal_pretrain_config`, only the
    parts the image-encoder goal estimate alone uses (`VLAModel.goal_path_prefixes`: its head and the keyframe's
    encoder) through `vision_goal_loss`; everything the backbone and the expert read stays as `init_weights` had
    it. No resume."""
    if processor is None:
        if resume_from is not None:
            ckpt = load_checkpoint(resume_from, config.model_type, config_cls=VLAConfig)
            processor = VLAProcessor.from_checkpoint(ckpt, ckpt.config)
        else:
            n = min(len(dataset), fit_samples)
            processor = VLAProcessor.build(config, robot or RobotSpec(), [dataset[i] for i in range(n)], corpus=corpus,
                                           fit_fast=config.fast_loss_weight > 0)
    model = VLAModel(config)
    if init_weights is not None and resume_from is None:
        from ...checkpoint import load_weights
        load_weights(model, init_weights, source='init weights')
    cfg = replace(train_config or TrainConfig(), steps=steps, **train_overrides)
    if not encoder_lr_scale > 0:
        raise ValueError(f'encoder_lr_scale must be > 0, got {encoder_lr_scale}')
    if encoder_lr_scale != 1.0:
        cfg = replace(cfg, lr_scales=tuple((p, encoder_lr_scale) for p in model.pretrained_encoder_prefixes())
                      + cfg.lr_scales)

    def save_model(m: VLAModel, directory: Path) -> None:
        save_checkpoint(directory, m, m.config, extra_files=processor.to_files(), norm_stats=processor.norm_stats,
                        embodiment=processor.robot.embodiment, profile=profile)

    if goal_head_only:
        if init_weights is None or goal_pretrain_dataset is None or resume_from is not None:
            raise ValueError('goal_head_only fine-tunes a trained VLA: it needs init_weights and a '
                             'goal_pretrain_dataset, and does not resume')
        if not hasattr(model, 'vision_goal_head'):
            raise ValueError('goal_head_only needs a model with goal heads (config.goal_loss_weight > 0)')
        trainable = model.goal_path_prefixes()
        for name, p in model.named_parameters():
            p.requires_grad_(name.startswith(trainable))
        goal_cfg = replace(goal_pretrain_config or cfg, steps=steps, lr_scales=(),
                           plot_every=cfg.plot_every, save_every=cfg.save_every)
        result = train(VisionGoalObjective(model), goal_pretrain_dataset, goal_cfg, out_dir,
                       collate_fn=processor.collate, save_model=lambda m, d: save_model(m.model, d),
                       title='vla goal head')
        for p in model.parameters():
            p.requires_grad_(True)
        return VLAPolicy(model, processor), result

    pretrain = None
    if goal_pretrain_steps > 0 and goal_pretrain_dataset is not None and resume_from is None:
        if not hasattr(model, 'vision_goal_head'):
            raise ValueError('goal pretraining needs a model with goal heads (config.goal_loss_weight > 0)')
        pre_cfg = replace(goal_pretrain_config or cfg, steps=goal_pretrain_steps, lr_scales=())
        # out_dir None: nothing to save, the encoder's weights go on into the VLA training below
        pretrain = train(VisionGoalObjective(model), goal_pretrain_dataset, pre_cfg, None,
                         collate_fn=processor.collate, title='vision goal pretraining')
    result = train(model, dataset, cfg, out_dir, collate_fn=processor.collate, resume_from=resume_from,
                   save_model=save_model, title='vla')
    result.pretrain = pretrain
    return VLAPolicy(model, processor), result


class VisionGoalObjective(nn.Module):
    """The VLA seen through its image-encoder goal loss only (parameters shared; the rest gets no gradient)."""

    def __init__(self, model: VLAModel):
        super().__init__()
        self.model = model

    def forward(self, batch):
        return self.model.vision_goal_loss(batch)
