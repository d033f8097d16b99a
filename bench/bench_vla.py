"""VLA inference benchmark: the `tiny` pi07 VLA against transformers' own PI0ForConditionalGeneration built at the
same dimensions, in the same run, on this CPU.

Settings: fp32, 1 thread, two 96 px cameras + task/subtask/metadata text, a 50 x 14 chunk, 10 Euler steps,
batch 1. Figures: ms per chunk (median and p90 over --repeats after a warm-up), the ratio ours / transformers,
RTC guided / plain sampling and RTC frozen (training-time RTC) / plain (calls interleaved A B C A B C in one
process, so all see the same load),
parameter counts and peak resident memory (each model alone in its own process).

    source scripts/env.sh && python bench/bench_vla.py            # writes out/bench/vla.json

Our timing is the whole policy call (`VLAPolicy.infer`: image resize + tokenisation + prefix + 10 steps +
unnormalisation); transformers' is `sample_actions` on ready tensors (no preprocessing), so the comparison
favours transformers slightly. The machine is shared: figures are noisy.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
HORIZON, ACTION_DIM, STEPS, IMAGE = 50, 14, 10, 96


def rss_mb() -> float:
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1]) / 1024
    return float('nan')


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def observation():
    from pi07_policy.models.vla.synthetic import make_sample
    sample = make_sample(np.random.default_rng(0), horizon=HORIZON, state_dim=14, action_dim=ACTION_DIM,
                         image_size=IMAGE, with_subgoal=False, with_memory=False)
    return sample, {k: v for k, v in sample.items() if k != 'actions'}


def build_ours():
    """-> (plain call, RTC guided call, RTC frozen call, info) for the tiny pi07 VLA behind its policy boundary
    (frozen: the same weights in a model configured as trained with training-time RTC)."""
    import torch

    from pi07_policy.models.vla import RobotSpec, VLAModel, VLAPolicy, VLAProcessor, count_parameters, tiny
    cfg = tiny()
    sample, obs = observation()
    processor = VLAProcessor.build(cfg, RobotSpec(), [sample], fit_fast=False)
    policy = VLAPolicy(VLAModel(cfg), processor)
    prev = policy.infer(obs)['actions'][10:]
    rtc_obs = {**obs, 'prev_actions': prev, 'delay_steps': 5, 'execution_horizon': 25, 'mode': 'rtc'}
    batch = processor.observation_batch(obs)
    with torch.inference_mode():
        prefix_tokens = int(policy.model.embed_prefix(batch)[1].sum())
    info = {'params': count_parameters(policy.model), 'prefix_tokens': prefix_tokens,
            'text_ids': batch['text_ids'][0].tolist()}
    trained = VLAModel(tiny(rtc_train_prob=0.5, rtc_max_delay=10))
    trained.load_state_dict(policy.model.state_dict())
    frozen = VLAPolicy(trained, processor)
    assert frozen.rtc_method == 'frozen'
    return (lambda: policy.infer({**obs, 'mode': 'sync'})), (lambda: policy.infer(rtc_obs)), \
        (lambda: frozen.infer(rtc_obs)), info


def build_transformers(text_ids: list[int]):
    """-> (sample_actions call, info) for transformers' PI0 at the tiny dims, or (None, info) if absent."""
    import torch
    import transformers
    if not hasattr(transformers, 'PI0ForConditionalGeneration'):
        return None, {'available': False, 'transformers': transformers.__version__}
    from transformers import PI0Config, PI0ForConditionalGeneration

    from pi07_policy.models.vla import tiny
    cfg = tiny()
    d, e, v = cfg.decoder, cfg.expert, cfg.vision
    vocab = cfg.vocab_size
    hf_cfg = PI0Config(
        vlm_config={'model_type': 'paligemma', 'vocab_size': vocab, 'image_token_id': vocab,
                    'projection_dim': d.hidden_size,
                    'text_config': {'model_type': 'gemma', 'hidden_size': d.hidden_size, 'vocab_size': vocab,
                                    'num_hidden_layers': d.num_layers, 'intermediate_size': d.intermediate_size,
                                    'num_attention_heads': d.num_heads, 'num_key_value_heads': d.num_kv_heads,
                                    'head_dim': d.head_dim},
                    'vision_config': {'model_type': 'siglip_vision_model', 'hidden_size': v.hidden_size,
                                      'intermediate_size': v.intermediate_size, 'num_hidden_layers': v.num_layers,
                                      'num_attention_heads': v.num_heads, 'image_size': v.image_size,
                                      'patch_size': v.patch_size, 'vision_use_head': False}},
        dit_config={'model_type': 'gemma', 'hidden_size': e.hidden_size, 'num_hidden_layers': d.num_layers,
                    'intermediate_size': e.intermediate_size, 'num_attention_heads': d.num_heads,
                    'num_key_value_heads': d.num_kv_heads, 'head_dim': d.head_dim},
        chunk_size=HORIZON, max_state_dim=14, max_action_dim=ACTION_DIM, num_inference_steps=STEPS)
    model = PI0ForConditionalGeneration(hf_cfg).eval()
    n_img = 2 * v.tokens_per_image
    ids = torch.tensor([[vocab] * n_img + text_ids])
    pixels = torch.randn(1, 2, 3, v.image_size, v.image_size)
    kwargs = dict(state=torch.randn(1, 14), input_ids=ids, pixel_values=pixels, attention_mask=torch.ones_like(ids),
                  pixel_attention_mask=torch.ones(1, 2, dtype=torch.bool), num_steps=STEPS)

    def call():
        with torch.inference_mode():
            return model.sample_actions(**kwargs)

    assert tuple(call().shape) == (1, HORIZON, ACTION_DIM)
    return call, {'available': True, 'transformers': transformers.__version__,
                  'params': sum(p.numel() for p in model.parameters()), 'prefix_tokens': int(ids.shape[1])}


def interleaved(calls: dict, repeats: int, warmup: int = 3) -> dict[str, dict[str, float]]:
    """Time several calls in turns (A B C A B C ...), so that all see the same machine load."""
    for fn in calls.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {k: [] for k in calls}
    for _ in range(repeats):
        for name, fn in calls.items():
            t0 = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - t0) * 1e3)
    return {k: {'median_ms': float(np.median(v)), 'p90_ms': float(np.percentile(v, 90)), 'min_ms': float(np.min(v))}
            for k, v in times.items()}


def worker_timing(repeats: int) -> dict:
    import torch
    torch.set_num_threads(1)
    plain, rtc, rtc_frozen, ours = build_ours()
    hf_call, hf = build_transformers(ours['text_ids'])
    calls = {'plain': plain, 'rtc': rtc, 'rtc_frozen': rtc_frozen, **({'transformers': hf_call} if hf_call else {})}
    return {'ours': ours, 'transformers': hf, 'times': interleaved(calls, repeats)}


def worker_memory(kind: str) -> dict:
    """Peak RSS of one model alone in this process: after imports, then after building and 3 calls."""
    import torch
    torch.set_num_threads(1)
    import transformers  # noqa: F401  (both kinds pay the import: compare model memory, not import memory)

    import pi07_policy.models.vla  # noqa: F401
    before = rss_mb()
    if kind == 'ours':
        plain, rtc, rtc_frozen, _ = build_ours()
        calls = [plain, rtc, rtc_frozen]
    else:
        from pi07_policy.models.vla import RobotSpec, VLAProcessor, tiny
        sample, obs = observation()
        text_ids = VLAProcessor.build(tiny(), RobotSpec(), [sample], fit_fast=False).observation_batch(obs)['text_ids']
        call, _ = build_transformers(text_ids[0].tolist())
        calls = [call] if call else []
    for fn in calls:
        for _ in range(3):
            fn()
    return {'rss_after_imports_mb': before, 'peak_rss_mb': peak_rss_mb()}


def run_worker(args: list[str]) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')
    proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, env=env, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f'worker {args} failed:\n{proc.stderr[-3000:]}')
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--repeats', type=int, default=20)
    parser.add_argument('--out', default=str(ROOT / 'out' / 'bench' / 'vla.json'))
    parser.add_argument('--worker', choices=['timing', 'memory'])
    parser.add_argument('--kind', choices=['ours', 'transformers'], default='ours')
    args = parser.parse_args()
    if args.worker == 'timing':
        print(json.dumps(worker_timing(args.repeats)))
        return
    if args.worker == 'memory':
        print(json.dumps(worker_memory(args.kind)))
        return

    timing = run_worker(['--worker', 'timing', '--repeats', str(args.repeats)])
    memory = {k: run_worker(['--worker', 'memory', '--kind', k]) for k in ('ours', 'transformers')}
    ours, hf, times = timing['ours'], timing['transformers'], timing['times']
    ours.pop('text_ids')
    result = {
        'settings': {'dtype': 'float32', 'threads': 1, 'cameras': 2, 'image_px': IMAGE, 'horizon': HORIZON,
                     'action_dim': ACTION_DIM, 'flow_steps': STEPS, 'batch': 1, 'repeats': args.repeats,
                     'cpu_count': os.cpu_count(), 'load_avg_1m': os.getloadavg()[0]},
        'pi07_tiny': {**ours, 'plain': times['plain'], 'rtc': times['rtc'], 'rtc_frozen': times['rtc_frozen'],
                      'memory': memory['ours']},
        'transformers_pi0': {**hf, 'plain': times.get('transformers'), 'memory': memory['transformers']},
        'rtc_over_plain': times['rtc']['median_ms'] / times['plain']['median_ms'],
        'rtc_frozen_over_plain': times['rtc_frozen']['median_ms'] / times['plain']['median_ms'],
        'command': f'python bench/bench_vla.py --repeats {args.repeats}',
    }
    if 'transformers' in times:
        result['ours_over_transformers'] = times['plain']['median_ms'] / times['transformers']['median_ms']
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))

    def mem(m):
        grown = m['peak_rss_mb'] - m['rss_after_imports_mb']
        return f"peak RSS {m['peak_rss_mb']:.0f} MB (+{grown:.0f} MB after imports)"

    print(f"pi07 tiny VLA ({ours['params']['total'] / 1e6:.2f}M params, {ours['prefix_tokens']} prefix tokens): "
          f"plain {times['plain']['median_ms']:.1f} ms/chunk (p90 {times['plain']['p90_ms']:.1f}), "
          f"RTC guided {times['rtc']['median_ms']:.1f} ms (p90 {times['rtc']['p90_ms']:.1f}), "
          f"RTC frozen (training-time RTC) {times['rtc_frozen']['median_ms']:.1f} ms "
          f"(p90 {times['rtc_frozen']['p90_ms']:.1f}); "
          f"{mem(memory['ours'])}")
    if 'transformers' in times:
        t = times['transformers']
        print(f"transformers {hf['transformers']} PI0ForConditionalGeneration, same dims ({hf['params'] / 1e6:.2f}M "
              f"params, {hf['prefix_tokens']} prefix tokens): {t['median_ms']:.1f} ms/chunk (p90 {t['p90_ms']:.1f}); "
              f"{mem(memory['transformers'])}")
        print(f"ratio ours / transformers = {result['ours_over_transformers']:.2f}  (target: <= 80 ms, aim < 1)")
    else:
        print(f"transformers {hf['transformers']} has no PI0ForConditionalGeneration: no side-by-side figure")
    print(f"ratio RTC guided / plain = {result['rtc_over_plain']:.2f}  (target <= 3); RTC frozen / plain = "
          f"{result['rtc_frozen_over_plain']:.2f}")
    print(f'written {out}')


if __name__ == '__main__':
    main()
