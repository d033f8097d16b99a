"""World-model inference benchmark: subgoal images for two 96 px cameras on this CPU.

Settings: fp32, 1 thread, batch 1, the `tiny` config (or --checkpoint), 10 Euler steps, full conditioning
(task + subtask + metadata + both current images). Figures: seconds per `WorldModel.generate` call (the whole
dict-in/dict-out call: resize + tokenisation + VAE encoding + flow steps + VAE decoding + uint8 conversion),
median / p90 / min over --repeats after a warm-up, against the 0.5 s budget; the same for one camera and with
the optional classifier-free guidance (two UNet passes per step); a
breakdown of one call; parameter counts; resident memory before the model is built and the process's peak.
Timing does not depend on the weights, so untrained weights are used unless --checkpoint is given.

    source scripts/env.sh && python bench/bench_world_model.py          # writes out/bench/world_model.json

The machine is shared by several engineers: figures are noisy; rerun the command to see the spread.
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUDGET_S = 0.5


def rss_mb() -> float:
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1]) / 1024
    return float('nan')


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(fn, repeats: int, warmup: int = 2) -> dict[str, float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    times.sort()
    return {'median_s': statistics.median(times), 'p90_s': times[min(len(times) - 1, int(0.9 * len(times)))],
            'min_s': times[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--checkpoint', default=None, help='a trained world-model checkpoint directory')
    parser.add_argument('--repeats', type=int, default=10)
    parser.add_argument('--steps', type=int, default=10, help='Euler steps')
    parser.add_argument('--out', default=str(ROOT / 'out' / 'bench' / 'world_model.json'))
    args = parser.parse_args()

    import torch
    torch.set_num_threads(1)
    from pi07_world_model.configuration_world_model import tiny
    from pi07_world_model.modeling_world_model import WorldModel
    from pi07_world_model.processing_world_model import WorldModelProcessor
    from pi07_world_model.synthetic import MovingBlocksDataset
    rss_before_model = rss_mb()

    if args.checkpoint:
        model = WorldModel.from_pretrained(args.checkpoint)
    else:
        torch.manual_seed(0)
        cfg = tiny()
        model = WorldModel(cfg, WorldModelProcessor.from_texts(cfg, MovingBlocksDataset(1, 96).texts())).eval()
    cfg = model.config
    sample = MovingBlocksDataset(1, cfg.image_size, cfg.camera_names)[0]
    obs = {k: sample[k] for k in ('images', 'subtask', 'task', 'metadata')}
    one_cam = dict(obs, images={cfg.camera_names[0]: obs['images'][cfg.camera_names[0]]})
    rss_model = rss_mb()

    two = timed(lambda: model.generate(obs, num_steps=args.steps, seed=0), args.repeats)
    one = timed(lambda: model.generate(one_cam, num_steps=args.steps, seed=0), args.repeats)
    guided = timed(lambda: model.generate(obs, num_steps=args.steps, seed=0, guidance_scale=2.0), args.repeats)

    # Breakdown of one two-camera call (median of a few).
    parts: dict[str, list[float]] = {'preprocess': [], 'condition (VAE encode + text)': [], 'flow steps': [],
                                     'VAE decode + uint8': []}
    with torch.inference_mode():
        for _ in range(5):
            t0 = time.perf_counter()
            batch, cams = model.processor.prepare_inference(obs)
            t1 = time.perf_counter()
            cond = model.condition(batch)
            t2 = time.perf_counter()
            z = torch.randn(len(cams), cfg.vae.latent_channels, cfg.latent_size, cfg.latent_size)
            for i in range(args.steps):
                z = z + model.velocity(z, torch.full((1,), i / args.steps), cond) / args.steps
            t3 = time.perf_counter()
            images = model.decode_latents(z)
            model.processor.to_uint8_dict(images, cams)
            t4 = time.perf_counter()
            for key, dt in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                parts[key].append(dt)
    breakdown = {k: statistics.median(v) for k, v in parts.items()}

    result = {
        'device': 'cpu', 'threads': torch.get_num_threads(), 'dtype': 'float32', 'image_size': cfg.image_size,
        'cameras': list(cfg.camera_names), 'flow_steps': args.steps, 'checkpoint': args.checkpoint,
        'parameters': model.num_parameters(),
        'two_cameras': two, 'one_camera': one, 'two_cameras_guided_cfg2': guided,
        'budget_s': BUDGET_S, 'median_over_budget': two['median_s'] / BUDGET_S,
        'within_budget': two['median_s'] <= BUDGET_S,
        'breakdown_two_cameras_s': breakdown,
        'rss_before_model_mb': rss_before_model, 'rss_with_model_mb': rss_model, 'peak_rss_mb': peak_rss_mb(),
    }
    print(f"world model ({cfg.image_size} px, {args.steps} steps, fp32, 1 thread, "
          f"{result['parameters']['total'] / 1e6:.1f}M params)")
    print(f"  two cameras: median {two['median_s'] * 1e3:.0f} ms  p90 {two['p90_s'] * 1e3:.0f} ms  "
          f"min {two['min_s'] * 1e3:.0f} ms   budget {BUDGET_S * 1e3:.0f} ms  (median/budget "
          f"{result['median_over_budget']:.2f})")
    print(f"  one camera:  median {one['median_s'] * 1e3:.0f} ms  p90 {one['p90_s'] * 1e3:.0f} ms")
    print(f"  two cameras, classifier-free guidance 2.0 (optional): median {guided['median_s'] * 1e3:.0f} ms  "
          f"p90 {guided['p90_s'] * 1e3:.0f} ms")
    print('  breakdown (two cameras): ' + ', '.join(f'{k} {v * 1e3:.1f} ms' for k, v in breakdown.items()))
    print(f"  memory: RSS {rss_before_model:.0f} MB before the model, {rss_model:.0f} MB with it, "
          f"peak {result['peak_rss_mb']:.0f} MB")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f'  -> {out}')


if __name__ == '__main__':
    main()
