"""A toy regression model and dataset that exercise the shared loop end to end, alone or distributed.

    torchrun --nproc_per_node 2 -m pi07_policy.training.selftest --out /tmp/toy --steps 20
    python -m pi07_policy.training.selftest --spawn 2 --out /tmp/toy --steps 20   # same, via torch.multiprocessing
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Dataset

from .distributed import cleanup_distributed, dist_info, init_distributed, spawn_local
from .loop import TrainConfig, train


@dataclass(frozen=True)
class ToyConfig:
    model_type: str = 'toy_regressor'
    in_dim: int = 8
    hidden: int = 64
    out_dim: int = 4


class ToyModel(nn.Module):
    def __init__(self, config: ToyConfig):
        super().__init__()
        self.config = config
        self.net = nn.Sequential(nn.Linear(config.in_dim, config.hidden), nn.GELU(),
                                 nn.Linear(config.hidden, config.out_dim))

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        pred = self.net(batch['x'])
        return {'loss': nn.functional.mse_loss(pred, batch['y'])}


class ToyDataset(Dataset):
    """A fixed random linear map (+ a nonlinearity) on 64 fixed inputs: easy to overfit."""

    def __init__(self, n: int = 64, config: ToyConfig = ToyConfig(), seed: int = 123):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, config.in_dim, generator=g)
        w = torch.randn(config.in_dim, config.out_dim, generator=g)
        self.y = torch.tanh(self.x @ w / config.in_dim**0.5)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {'x': self.x[i], 'y': self.y[i]}


def run(out_dir: str, steps: int) -> dict:
    info = dist_info()
    model = ToyModel(ToyConfig())
    cfg = TrainConfig(steps=steps, batch_size=8, lr=3e-3, warmup_steps=2, log_every=2, plot_every=0, progress=False)
    result = train(model, ToyDataset(), cfg, out_dir, title='toy')
    summary = {'rank': info.rank, 'world_size': info.world_size, 'step': result.step,
               'first_loss': result.first(), 'last_loss': result.last(),
               'weight_checksum': float(sum(p.detach().double().sum() for p in model.parameters()))}
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    (Path(out_dir) / f'rank{info.rank}.json').write_text(json.dumps(summary))
    return summary


def _spawned(rank: int, out_dir: str, steps: int) -> None:
    run(out_dir, steps)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out', required=True)
    parser.add_argument('--steps', type=int, default=20)
    parser.add_argument('--spawn', type=int, default=0, help='start N local ranks (instead of torchrun)')
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.spawn:
        spawn_local(_spawned, args.spawn, (args.out, args.steps))
        return
    init_distributed()
    try:
        print(json.dumps(run(args.out, args.steps)))
    finally:
        cleanup_distributed()


if __name__ == '__main__':
    main()
