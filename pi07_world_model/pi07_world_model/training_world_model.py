"""Training of the world model, on pi07_policy's shared loop (progress bars, loss plots, resume, seeds, DDP).

Two stages, in sequence (not jointly: the flow needs a fixed latent space to aim at, and a VAE trained alone
converges in a fraction of the steps):

1. `vae`  - the VAE alone, on every current and subgoal image (reconstruction + small KL).  -> out_dir/vae/
2. latent normalisation fitted on the first `stats_samples` samples (the same ones on every rank).
3. `flow` - text encoder, metadata embeddings and UNet, with the VAE frozen, on the flow-matching loss, with
   pi0.7-style prompt dropout.                                                                -> out_dir/flow/
4. the final model -> out_dir/world_model/ (a clean checkpoint: no optimizer state).

    model = train_world_model(dataset, tiny(), 'runs/wm', steps=5000, vae_steps=2000)

Any torch Dataset works whose items are {'images': {cam: uint8 HxWx3 | float 3xHxW}, 'subgoal_images': {...},
'subtask': str, 'task': str | None, 'metadata': dict | None}.

Command line (synthetic moving blocks; also runs under `torchrun --nproc_per_node N`):

    python -m pi07_world_model.training_world_model --out runs/wm --config tiny --vae-steps 2000 --steps 5000
"""
from __future__ import annotations

import argparse
import functools
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset

from pi07_policy.checkpoint import load_checkpoint
from pi07_policy.training import CHECKPOINT_DIR, TrainConfig, cleanup_distributed, dist_info, init_distributed, train
from pi07_policy.training.distributed import barrier, spawn_local

from .configuration_world_model import CONFIGS, WorldModelConfig
from .modeling_world_model import WorldModel
from .processing_world_model import TOKENIZER_FILE, WorldModelProcessor, train_tokenizer
from .synthetic import MovingBlocksDataset

FINAL_DIR = 'world_model'


@dataclass(frozen=True)
class WorldModelTrainConfig:
    vae_steps: int = 2000
    flow_steps: int = 5000
    batch_size: int = 16          # per rank
    vae_lr: float = 2e-3
    flow_lr: float = 1e-3
    warmup_steps: int = 50
    seed: int = 0
    stats_samples: int = 64       # samples whose latents fix the latent normalisation
    log_every: int = 10
    plot_every: int = 200
    save_every: int = 0
    progress: bool = True


def collect_texts(dataset: Dataset, limit: int = 5000) -> list[str]:
    """Texts to fit the tokenizer on: dataset.texts() when the dataset has it, else the first `limit` items."""
    if hasattr(dataset, 'texts'):
        return list(dataset.texts())
    texts = set()
    for i in range(min(len(dataset), limit)):
        item = dataset[i]
        texts.update(t for t in (item.get('task'), item.get('subtask')) if t)
    return sorted(texts)


def _save(model: WorldModel, directory: Path) -> None:
    model.save_pretrained(directory)


def _load(model: WorldModel, directory: Path) -> None:
    model.load_weights_from(directory)


@torch.no_grad()
def fit_latent_stats(model: WorldModel, dataset: Dataset, num_samples: int, batch_size: int = 16) -> None:
    """Latent normalisation from the first num_samples items (deterministic, so every rank gets the same)."""
    images = []
    for start in range(0, min(num_samples, len(dataset)), batch_size):
        items = [dataset[i] for i in range(start, min(start + batch_size, num_samples, len(dataset)))]
        batch = model.processor.collate(items)
        images += [batch['images'].flatten(0, 1), batch['subgoal_images'].flatten(0, 1)]
    device = model.latent_mean.device
    model.fit_latent_stats(torch.cat(images).to(device))


def train_world_model(dataset: Dataset, config: WorldModelConfig, out_dir: str | Path, steps: int | None = None,
                      vae_steps: int | None = None, train_config: WorldModelTrainConfig = WorldModelTrainConfig(),
                      texts: list[str] | None = None, resume: bool = False,
                      device: str | torch.device | None = None) -> WorldModel:
    """Train the VAE, then the flow (see the module docstring); returns the trained model (eval mode).

    steps / vae_steps override train_config.flow_steps / vae_steps. With resume=True, an existing
    out_dir/flow/checkpoint continues the flow stage (the VAE stage is then skipped); else an existing
    out_dir/vae/checkpoint continues the VAE stage.
    """
    tc = train_config
    flow_steps = tc.flow_steps if steps is None else steps
    vae_steps = tc.vae_steps if vae_steps is None else vae_steps
    out = Path(out_dir)
    vae_ckpt, flow_ckpt = out / 'vae' / CHECKPOINT_DIR, out / 'flow' / CHECKPOINT_DIR
    resume_flow = resume and (flow_ckpt / 'config.json').is_file()
    resume_vae = resume and not resume_flow and (vae_ckpt / 'config.json').is_file()

    # The tokenizer: from the checkpoint being resumed (it must not change under trained weights), else fitted.
    if resume_flow or resume_vae:
        ckpt = load_checkpoint(flow_ckpt if resume_flow else vae_ckpt, config.model_type, check_hash=False)
        processor = WorldModelProcessor.from_tokenizer_file(config, ckpt.path(TOKENIZER_FILE))
    else:
        tokenizer = train_tokenizer(texts or collect_texts(dataset), vocab_size=config.text.vocab_size)
        processor = WorldModelProcessor(config, tokenizer)
    model = WorldModel(config, processor)

    def loop_config(n: int, lr: float) -> TrainConfig:
        return TrainConfig(steps=n, batch_size=tc.batch_size, lr=lr, warmup_steps=min(tc.warmup_steps, n // 5),
                           seed=tc.seed, log_every=tc.log_every, plot_every=tc.plot_every,
                           save_every=tc.save_every, progress=tc.progress)

    common = {'save_model': _save, 'load_model': _load, 'device': device}
    if not resume_flow:
        model.set_stage('vae')
        train(model, dataset, loop_config(vae_steps, tc.vae_lr), out / 'vae', title='world model: VAE',
              collate_fn=functools.partial(processor.collate, train=False),
              resume_from=vae_ckpt if resume_vae else None, **common)
        fit_latent_stats(model, dataset, tc.stats_samples)
    model.set_stage('flow')
    train(model, dataset, loop_config(flow_steps, tc.flow_lr), out / 'flow', title='world model: flow',
          collate_fn=functools.partial(processor.collate, train=True),
          resume_from=flow_ckpt if resume_flow else None, **common)
    if dist_info().is_main:
        model.save_pretrained(out / FINAL_DIR)
    barrier()
    return model.eval()


# --------------------------------------------------------------------------------------------- command line
def run_synthetic(out_dir: str, config_name: str, vae_steps: int, steps: int, samples: int, batch_size: int,
                  image_size: int | None = None) -> dict:
    """Train on the synthetic moving-blocks data; write and return a small summary (per rank)."""
    info = dist_info()
    config = CONFIGS[config_name]() if image_size is None else CONFIGS[config_name](image_size=image_size)
    dataset = MovingBlocksDataset(samples, config.image_size, config.camera_names)
    tc = WorldModelTrainConfig(batch_size=batch_size, progress=info.is_main, log_every=max(1, min(10, steps // 4)))
    model = train_world_model(dataset, config, out_dir, steps=steps, vae_steps=vae_steps, train_config=tc)
    history = [json.loads(line) for line in (Path(out_dir) / 'flow' / 'history.jsonl').read_text().splitlines()]
    summary = {'rank': info.rank, 'world_size': info.world_size, 'flow_first': history[0]['loss'],
               'flow_last': history[-1]['loss'],
               'weight_checksum': float(sum(p.detach().double().sum() for p in model.parameters()))}
    (Path(out_dir) / f'rank{info.rank}.json').write_text(json.dumps(summary))
    return summary


def _spawned(rank: int, *args) -> None:
    run_synthetic(*args)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out', required=True)
    parser.add_argument('--config', default='tiny', choices=sorted(CONFIGS))
    parser.add_argument('--image-size', type=int, default=None, help='only with --config micro')
    parser.add_argument('--vae-steps', type=int, default=2000)
    parser.add_argument('--steps', type=int, default=5000, help='flow steps')
    parser.add_argument('--samples', type=int, default=2048, help='synthetic samples')
    parser.add_argument('--batch-size', type=int, default=16)
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--spawn', type=int, default=0, help='start N local gloo ranks (instead of torchrun)')
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    run_args = (args.out, args.config, args.vae_steps, args.steps, args.samples, args.batch_size, args.image_size)
    if args.spawn:
        spawn_local(_spawned, args.spawn, run_args)
        return
    init_distributed()
    try:
        print(json.dumps(run_synthetic(*run_args)))
    finally:
        cleanup_distributed()


if __name__ == '__main__':
    main()
