"""Open-loop evaluation of a world model on held-out samples: is the subgoal closer to the truth than doing nothing?

Metrics (per-pixel MSE in [-1, 1] units, mean over samples and cameras):
- `mse_generated`: generated subgoal vs the true subgoal image;
- `mse_copy_current`: the current image vs the true subgoal (the "nothing moves" baseline the model must beat);
- `mse_vae_reconstruction`: the true subgoal through the VAE (the floor the generator can reach);
- `mse_wrong_subtask`: generated with another sample's subtask, one that differs from its own (a model that reads
  the text does worse here);
- `mse_wrong_keyframe` / `mse_no_keyframe` (a model that reads keyframes): generated with another episode's keyframe
  (first frames that differ from its own) / with none.
A sample whose batch holds no other subtask (or keyframe) keeps its own there; `pairs_wrong_subtask` and
`pairs_wrong_keyframe` count the samples that got a different one.

    python -m pi07_world_model.evaluation_world_model runs/wm/world_model --samples 128
    python -m pi07_world_model.evaluation_world_model pi07_bringup/checkpoints/sim_gantry/world_model \
        --dataset data/datasets/gantry --split val --samples 256      # held-out episodes of a converted dataset

With `--dataset`, the samples are drawn at random (seeded) from that split of a dataset made by
`pi07_policy.data.convert`, as `train world_model` builds them (subgoal = the frame where the subtask is done, or
3 s ahead); `--include restore_layout` keeps one task family, `--subtask-contains "back where"` the steps of the
subtasks whose text contains it.
"""
from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from .modeling_world_model import WorldModel
from .synthetic import MovingBlocksDataset


@torch.no_grad()
def evaluate(model: WorldModel, dataset: Dataset, num_samples: int = 128, batch_size: int = 16, seed: int = 0,
             guidance_scale: float | None = None) -> dict[str, float]:
    model.eval()
    sums = {'mse_generated': 0.0, 'mse_copy_current': 0.0, 'mse_vae_reconstruction': 0.0, 'mse_wrong_subtask': 0.0}
    counts = {'pairs_wrong_subtask': 0}
    if model.config.reads_keyframe:
        sums.update(mse_wrong_keyframe=0.0, mse_no_keyframe=0.0)
        counts['pairs_wrong_keyframe'] = 0
    sums.update(counts)
    n = min(num_samples, len(dataset))
    for start in range(0, n, batch_size):
        items = [dataset[i] for i in range(start, min(start + batch_size, n))]
        batch = model.processor.collate(items)
        # Each sample paired with the next one whose subtask text differs (same images and metadata): neighbours
        # drawn from one episode often share it, and pairing with an equal text would measure nothing.
        partner = [_next_different(items, i, lambda a, b: a['subtask'] != b['subtask']) for i in range(len(items))]
        sums['pairs_wrong_subtask'] += sum(j != i for i, j in enumerate(partner))
        shuffled = [dict(item, subtask=items[j]['subtask']) for item, j in zip(items, partner)]
        wrong = model.processor.collate(shuffled)
        target, current = batch['subgoal_images'], batch['images']                  # (B, V, 3, S, S)
        generated = model.sample(batch, seed=seed + start, guidance_scale=guidance_scale)
        recon = model.decode_latents(model.encode_images(target.flatten(0, 1))).view_as(target)
        off = model.sample(wrong, seed=seed + start, guidance_scale=guidance_scale)
        results = [('mse_generated', generated), ('mse_copy_current', current),
                   ('mse_vae_reconstruction', recon), ('mse_wrong_subtask', off)]
        if model.config.reads_keyframe:
            partner = [_next_different(items, i, _keyframes_differ) for i in range(len(items))]
            sums['pairs_wrong_keyframe'] += sum(j != i for i, j in enumerate(partner))
            swapped = [dict(item, keyframe_images=items[j].get('keyframe_images')) for item, j in zip(items, partner)]
            results += [('mse_wrong_keyframe', model.sample(model.processor.collate(swapped), seed=seed + start,
                                                            guidance_scale=guidance_scale)),
                        ('mse_no_keyframe', model.sample({k: v for k, v in batch.items()
                                                          if not k.startswith('keyframe')}, seed=seed + start,
                                                         guidance_scale=guidance_scale))]
        for key, images in results:
            sums[key] += (images - target).pow(2).mean(dim=(1, 2, 3, 4)).sum().item()   # summed over the batch
    out = {k: (v if k in counts else v / n) for k, v in sums.items()}
    out['samples'] = n
    return out


def _next_different(items: list[dict], i: int, differs) -> int:
    """The index of the first item after i (cyclically) for which differs(items[i], item) holds; i if none."""
    for step in range(1, len(items)):
        j = (i + step) % len(items)
        if differs(items[i], items[j]):
            return j
    return i


def _keyframes_differ(a: dict, b: dict) -> bool:
    ka, kb = a.get('keyframe_images'), b.get('keyframe_images')
    if ka is None or kb is None:
        return (ka is None) != (kb is None)
    return ka.keys() != kb.keys() or any(not np.array_equal(np.asarray(ka[c]), np.asarray(kb[c])) for c in ka)


def dataset_samples(root: str, split: str, num_samples: int, seed: int, keyframe: bool = False,
                    include: list[str] | None = None, subtask_contains: str | None = None) -> Dataset:
    """`num_samples` items drawn at random (seeded) from a converted dataset's split, as the trainer builds them
    (with each episode's first frames as `keyframe_images` where `keyframe`); `include`: these task families only;
    `subtask_contains`: only the steps of subtasks whose text contains it."""
    from pi07_policy.data.datasets import WorldModelDataset
    dataset = WorldModelDataset(root, split, keyframe=keyframe, include=include)
    candidates = range(len(dataset))
    if subtask_contains:
        def subtask_text(k: int, t: int) -> str:
            index = int(dataset.arrays(k).subtask_index[t])
            return dataset.episodes[k]['subtasks'][index] if index >= 0 else ''
        candidates = [i for i, (k, t) in enumerate(dataset.items) if subtask_contains in subtask_text(k, t)]
    if len(candidates) == 0:
        raise ValueError(f'{root}: the {split!r} split has no samples'
                         + (f' of a subtask containing {subtask_contains!r}' if subtask_contains else ''))
    rng = np.random.default_rng(seed)
    picks = rng.choice(np.asarray(candidates), size=min(num_samples, len(candidates)), replace=False)
    return Subset(dataset, sorted(int(i) for i in picks))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('checkpoint')
    parser.add_argument('--samples', type=int, default=128)
    parser.add_argument('--data-seed', type=int, default=1, help='synthetic data seed (training used 0)')
    parser.add_argument('--guidance-scale', type=float, default=None)
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--dataset', default=None, help='a converted dataset (default: synthetic samples)')
    parser.add_argument('--split', default='val', help='with --dataset: its split')
    parser.add_argument('--include', nargs='+', default=None, help='with --dataset: these task families only')
    parser.add_argument('--subtask-contains', default=None,
                        help='with --dataset: only steps of subtasks whose text contains this')
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = WorldModel.from_pretrained(args.checkpoint)
    if args.dataset:
        torch.manual_seed(args.data_seed)   # the dataset's coin (subtask end or 3 s ahead) per sample
        data = dataset_samples(args.dataset, args.split, args.samples, args.data_seed,
                               keyframe=model.config.reads_keyframe, include=args.include,
                               subtask_contains=args.subtask_contains)
    else:
        data = MovingBlocksDataset(args.samples, model.config.image_size, model.config.camera_names,
                                   seed=args.data_seed)
    print(json.dumps(evaluate(model, data, args.samples, guidance_scale=args.guidance_scale), indent=1))


if __name__ == '__main__':
    main()
