"""The training loop every pi07 model shares (VLA, high-level decoder, world model).

Contract: `model(batch) -> dict[str, Tensor]` of scalar losses/metrics. If the dict has 'loss' it is what is
back-propagated, else the sum of all entries that require grad. Everything else is logged.

    result = train(model, dataset, TrainConfig(steps=1000), out_dir='runs/vla', collate_fn=...)

- AdamW (weight decay on matrices only), linear warm-up then cosine decay, gradient-norm clipping.
- Fixed seeds (python, numpy, torch, the data order); rank r of a distributed run seeds with seed + r.
- tqdm progress bar, `history.jsonl` and a `loss.png` plot written every `plot_every` steps.
- A checkpoint directory `out_dir/checkpoint` (model files + optimizer.safetensors + trainer_state.json) every
  `save_every` steps and at the end; `resume_from=<that dir>` continues at the saved step with the saved optimizer
  state and RNG. The data order after a resume restarts at the epoch the step falls in (not the exact batch).
- Under torchrun (or `spawn_local`) the model is wrapped in DistributedDataParallel, each rank reads its own shard
  via DistributedSampler, and only rank 0 writes files.
"""
from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler
from tqdm.auto import tqdm

from ..checkpoint import add_files_to_checkpoint, load_checkpoint, save_checkpoint
from .distributed import all_reduce_mean, barrier, dist_info
from .plots import plot_losses
from .state import restore_training_state, training_state_files

CHECKPOINT_DIR = 'checkpoint'


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 1000
    batch_size: int = 8               # per rank
    lr: float = 3e-4
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.95)
    warmup_steps: int = 50
    min_lr_ratio: float = 0.1         # cosine decays to lr * min_lr_ratio at the last step
    grad_clip: float = 1.0            # max global grad norm (0 = off)
    seed: int = 0
    log_every: int = 10               # history row every N steps
    plot_every: int = 100             # loss.png every N steps (0 = only at the end)
    save_every: int = 0               # checkpoint every N steps (0 = only at the end)
    num_workers: int = 0
    progress: bool = True             # tqdm bar (main rank only)
    find_unused_parameters: bool = True  # DDP: some heads are idle in some batches (dropped prompt parts, KI)
    # (parameter-name prefix, LR multiplier): the first matching prefix sets a parameter's scale (default 1), e.g.
    # a slower image encoder after it was pretrained, so the new heads' early gradients do not undo that
    lr_scales: tuple[tuple[str, float], ...] = ()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up to cfg.lr, then cosine to cfg.lr * min_lr_ratio at cfg.steps."""
    if cfg.warmup_steps > 0 and step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    span = max(1, cfg.steps - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def lr_scale_of(name: str, cfg: TrainConfig) -> float:
    return next((scale for prefix, scale in cfg.lr_scales if name.startswith(prefix)), 1.0)


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW; weight decay on matrices only; one group per (decay, `cfg.lr_scales` multiplier), stored as the
    group's 'lr_scale' (the schedule multiplies it in every step)."""
    groups: dict[tuple[bool, float], list[torch.nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            groups.setdefault((p.ndim >= 2, lr_scale_of(name, cfg)), []).append(p)
    order = sorted(groups, key=lambda k: (not k[0], -k[1]))    # [decay, no decay] first: the unscaled layout
    return torch.optim.AdamW([{'params': groups[k], 'weight_decay': cfg.weight_decay if k[0] else 0.0,
                               'lr_scale': k[1]} for k in order], lr=cfg.lr, betas=cfg.betas)


def to_device(batch: Any, device: torch.device) -> Any:
    if torch.is_tensor(batch):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if isinstance(model, DistributedDataParallel) else model


def default_save_model(model: torch.nn.Module, directory: Path) -> None:
    """Plain checkpoint of a model that carries its frozen config as `model.config` (with a `model_type`)."""
    save_checkpoint(directory, model, model.config)


def default_load_model(model: torch.nn.Module, directory: Path) -> None:
    load_checkpoint(directory, getattr(getattr(model, 'config', None), 'model_type', None), model=model)


@dataclass
class TrainResult:
    step: int
    history: list[dict[str, float]] = field(default_factory=list)
    checkpoint_dir: Path | None = None
    out_dir: Path | None = None
    seconds: float = 0.0
    pretrain: TrainResult | None = None   # an earlier stage's result, where a trainer has one (VLA goal pretraining)

    def first(self, key: str = 'loss', n: int = 3) -> float:
        vals = [r[key] for r in self.history if key in r][:n]
        return float(np.mean(vals))

    def last(self, key: str = 'loss', n: int = 3) -> float:
        vals = [r[key] for r in self.history if key in r][-n:]
        return float(np.mean(vals))


def _total_loss(losses: Mapping[str, torch.Tensor]) -> torch.Tensor:
    if 'loss' in losses:
        return losses['loss']
    terms = [v for v in losses.values() if torch.is_tensor(v) and v.requires_grad]
    if not terms:
        raise ValueError(f'model returned no differentiable loss (keys {sorted(losses)})')
    return torch.stack([t.float() for t in terms]).sum()


def train(model: torch.nn.Module, dataset: Dataset, cfg: TrainConfig, out_dir: str | Path | None = None, *,
          collate_fn: Callable | None = None, resume_from: str | Path | None = None,
          save_model: Callable[[torch.nn.Module, Path], None] = default_save_model,
          load_model: Callable[[torch.nn.Module, Path], None] = default_load_model,
          device: str | torch.device | None = None, on_log: Callable[[dict[str, float]], None] | None = None,
          title: str | None = None) -> TrainResult:
    """Train `model` on `dataset` for `cfg.steps` optimizer steps (see the module docstring)."""
    info = dist_info()
    device = torch.device(device) if device is not None else torch.device('cpu')
    seed_everything(cfg.seed + info.rank)
    out = Path(out_dir) if out_dir is not None else None
    if out is not None and info.is_main:
        out.mkdir(parents=True, exist_ok=True)

    model.to(device)
    optimizer = make_optimizer(model, cfg)
    start_step, history = 0, []
    if resume_from is not None:
        load_model(model, Path(resume_from))
        state = restore_training_state(resume_from, optimizer)
        start_step, history = int(state['step']), list(state.get('history', []))
        torch.manual_seed(cfg.seed + info.rank + start_step)  # each rank continues with its own stream
    net = model
    if info.enabled:
        ddp_kwargs = {'device_ids': [device.index]} if device.type == 'cuda' else {}
        net = DistributedDataParallel(model, find_unused_parameters=cfg.find_unused_parameters, **ddp_kwargs)

    generator = torch.Generator().manual_seed(cfg.seed)
    if info.enabled:
        sampler = DistributedSampler(dataset, num_replicas=info.world_size, rank=info.rank, shuffle=True,
                                     seed=cfg.seed, drop_last=len(dataset) >= info.world_size)
    else:
        sampler = RandomSampler(dataset, generator=generator)
    loader = DataLoader(dataset, batch_size=cfg.batch_size, sampler=sampler, collate_fn=collate_fn,
                        num_workers=cfg.num_workers, drop_last=len(dataset) >= cfg.batch_size * info.world_size)
    steps_per_epoch = max(1, len(loader))

    def save(step: int) -> Path | None:
        if out is None:
            return None
        ckpt = out / CHECKPOINT_DIR
        if info.is_main:
            save_model(model, ckpt)
            add_files_to_checkpoint(ckpt, training_state_files(optimizer, step, history))
            plot_losses(history, out / 'loss.png', title=title or type(model).__name__)
        barrier()
        return ckpt

    history_file = open(out / 'history.jsonl', 'a') if (out is not None and info.is_main) else None
    bar = tqdm(total=cfg.steps, initial=start_step, desc=title or 'train', disable=not (cfg.progress and info.is_main),
               dynamic_ncols=True, leave=False)
    t0 = time.monotonic()
    step, epoch = start_step, start_step // steps_per_epoch
    ckpt_dir = None
    running: dict[str, list[float]] = {}
    net.train()
    try:
        while step < cfg.steps:
            if isinstance(sampler, DistributedSampler):
                sampler.set_epoch(epoch)
            else:
                generator.manual_seed(cfg.seed + epoch)
            for batch in loader:
                if step >= cfg.steps:
                    break
                lr = lr_at(step, cfg)
                for group in optimizer.param_groups:
                    group['lr'] = lr * group.get('lr_scale', 1.0)
                losses = net(to_device(batch, device))
                loss = _total_loss(losses)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f'non-finite loss at step {step}: '
                                             f'{ {k: float(v) for k, v in losses.items()} }')
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                params = [p for p in model.parameters() if p.grad is not None]
                grad_norm = (torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip) if cfg.grad_clip > 0
                             else torch.sqrt(sum((p.grad.detach() ** 2).sum() for p in params)))
                optimizer.step()
                step += 1
                for k, v in losses.items():
                    if torch.is_tensor(v) and v.numel() == 1:
                        running.setdefault(k, []).append(float(v.detach()))
                if 'loss' not in losses:
                    running.setdefault('loss', []).append(float(loss.detach()))
                running.setdefault('grad_norm', []).append(float(grad_norm))
                if step % cfg.log_every == 0 or step == cfg.steps:
                    means = {k: all_reduce_mean(float(np.mean(v))) for k, v in running.items()}
                    row = {'step': step, 'lr': lr, **means}
                    running = {}
                    history.append(row)
                    if history_file is not None:
                        history_file.write(json.dumps(row) + '\n')
                        history_file.flush()
                    bar.set_postfix({k: f'{v:.3g}' for k, v in row.items() if k not in ('step', 'lr', 'grad_norm')})
                    if on_log is not None and info.is_main:
                        on_log(row)
                bar.update(1)
                if out is not None and info.is_main and cfg.plot_every and step % cfg.plot_every == 0:
                    plot_losses(history, out / 'loss.png', title=title or type(model).__name__)
                if cfg.save_every and step % cfg.save_every == 0 and step < cfg.steps:
                    ckpt_dir = save(step)
            epoch += 1
        ckpt_dir = save(step) if out is not None else None
    finally:
        bar.close()
        if history_file is not None:
            history_file.close()
    net.eval()
    return TrainResult(step=step, history=history, checkpoint_dir=ckpt_dir, out_dir=out,
                       seconds=time.monotonic() - t0)
