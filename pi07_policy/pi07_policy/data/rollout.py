"""Closed loop without ROS: a VLA policy driving a simulated environment (pi07_sim.env.TabletopEnv or anything
with the same methods), for quick success-rate checks while training and for evaluations that skip DDS.

    from pi07_sim.env import TabletopEnv
    env = TabletopEnv('arm7', 'ordered_place', image_size=96)
    results = rollout(policy, env, seeds=range(10000, 10020), execute_steps=5)
    summarize(results)   # {'episodes', 'success_rate', 'mean_progress', 'mean_time_s', ...}

Each control step the environment renders the cameras and takes one action. Every `execute_steps` steps the
policy is asked for a new chunk from the current observation (synchronous: the simulated world waits for it)
and its first `execute_steps` actions are executed. The prompt holds the instruction, the episode metadata and
the subtask, from `subtask_source`:
  'plan'       the environment's plan, advanced by its own progress counter (the sim's `plan` mode with a
               perfect boundary detector; privileged but only ever text in the prompt)
  'high_level' a HighLevelPolicy decodes it from the images every `high_level_period_s`
  'none'       no subtask in the prompt
Short-term memory frames (as pi07_memory keeps them) are given with `use_memory`; subgoal images with a
`subgoal_fn(obs, subtask, task, metadata) -> {cam: uint8}` (`WorldModelSubgoals`: a world model's generate).
The policy never sees object poses: images, joint state and text only.

With `inference_delay_steps` = D > 0 the world does not wait: a chunk asked for at step k arrives at step k + D,
the chunk before it plays on meanwhile, and the next request is made when it arrives. `chunking='sync'` samples
each chunk from scratch (the executor then jumps to the row for the current time, D rows in); `chunking='rtc'`
plans it as the action expert does (`rtc_planner.plan_request`: rows frozen to the chunk being played, the rest
guided toward it over `execution_horizon` rows). This is the ROS stack's RTC-vs-sync ablation in simulated time:
the delay is exact and no other load on the machine changes it. `chunking='pause'` is synchronous execution as a
robot without RTC runs it (the RTC paper's synchronous baseline; 'sync' above is its naive asynchronous one): the
robot holds still while each chunk is computed (D steps), then plays its first `execute_steps` rows from row 0,
then holds again for the next.
"""
from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
from pi07_common.memory_layout import memory_slots

from ..control.gripper_confirm import GripperSwitchConfirm
from ..control.gripper_dwell import GripperDwell
from ..control.rtc_planner import PublishedChunk, plan_request


class MemoryFrames:
    """Frames kept every stride_s per camera, laid out as pi07_memory publishes them (`memory_slots`: the last n,
    oldest first, the oldest repeated to fill; with `keep_first`, the episode's first frame in the oldest slot)."""

    def __init__(self, n: int = 6, stride_s: float = 1.0, keep_first: bool = False):
        self.n, self.stride_s, self.keep_first = n, stride_s, keep_first
        self.frames: dict[str, list[np.ndarray]] = {}
        self.last_s = -np.inf

    def add(self, images: Mapping[str, np.ndarray], time_s: float) -> None:
        if time_s - self.last_s < 0.95 * self.stride_s:
            return
        self.last_s = time_s
        for cam, img in images.items():
            kept = self.frames.setdefault(cam, [])
            kept.append(np.asarray(img).copy())
            self.frames[cam] = kept[:1] + kept[1:][-self.n:]   # the first and the last n: all a layout can use

    def get(self) -> dict[str, list[np.ndarray]]:
        return {c: memory_slots(f, self.n, self.keep_first) for c, f in self.frames.items()}


class WorldModelSubgoals:
    """A `subgoal_fn` as the world-model node behaves: subgoal images generated from the newest images, the subtask,
    the task and its metadata on each new subtask and every `period_s` of simulated time while it lasts, the last
    ones given in between. `generate` is `WorldModel.generate` (dict in, dict out) or any function with its
    signature. The first images it sees go with every request as `keyframe_images` (the memory node's keyframe,
    which the world-model node passes on; a world model that does not read keyframes ignores them): one
    instance per episode."""

    def __init__(self, generate: Callable[..., dict], period_s: float = 3.0, seed: int | None = 0):
        self.generate, self.period_s, self.seed = generate, float(period_s), seed
        self.subtask: str | None = None
        self.last_s = -np.inf
        self.images: dict[str, np.ndarray] | None = None
        self.keyframe: dict[str, np.ndarray] | None = None
        self.generated = 0

    def __call__(self, obs: Mapping[str, Any], subtask: str | None, task: str | None = None,
                 metadata: Mapping[str, Any] | None = None) -> dict[str, np.ndarray] | None:
        if self.keyframe is None:
            self.keyframe = {c: np.array(img) for c, img in obs['images'].items()}
        if subtask is None:
            return None
        now = float(obs['time'])
        if subtask != self.subtask or now - self.last_s >= self.period_s:
            out = self.generate({'images': obs['images'], 'subtask': subtask, 'task': task, 'metadata': metadata,
                                 'keyframe_images': self.keyframe}, seed=self.seed)
            self.images, self.subtask, self.last_s = out['subgoal_images'], subtask, now
            self.generated += 1
        return self.images


class StaleObservations:
    """Wraps an environment so the policy sees the observation of `steps` control steps ago: what a real-time
    stack whose inference takes about `steps` control periods acts on (the world does not wait for it)."""

    def __init__(self, env, steps: int):
        self.env, self.delay_steps = env, int(steps)   # own names only: the rest is the env's
        self._recent: list[dict] = []

    def __getattr__(self, name):
        return getattr(self.env, name)

    def reset(self, seed: int | None = None) -> dict:
        self._recent = [self.env.reset(seed=seed)]
        return self._recent[0]

    def step(self, action) -> dict:
        self._recent = (self._recent + [self.env.step(action)])[-(self.delay_steps + 1):]
        return self._recent[0]


CHUNKING = ('sync', 'rtc', 'pause')


def run_episode(policy, env, seed: int, *, execute_steps: int = 5, subtask_source: str = 'plan',
                metadata: Mapping[str, Any] | None = None, use_memory: bool = False,
                subgoal_fn: Callable | None = None, high_level=None, high_level_period_s: float = 1.0,
                use_task: bool = True, max_time_s: float | None = None, gripper_dwell_s: float = 0.0,
                inference_delay_steps: int = 0, chunking: str = 'sync', execution_horizon: int = 8,
                gripper_confirm_s: float = 0.0, on_frame: Callable[[dict], None] | None = None) -> dict[str, Any]:
    if chunking not in CHUNKING:
        raise ValueError(f"chunking: one of {CHUNKING}, got {chunking!r}")
    if inference_delay_steps < 0:
        raise ValueError(f'inference_delay_steps must be >= 0, got {inference_delay_steps}')
    obs = env.reset(seed=seed)
    task = env.task
    meta = dict(metadata) if metadata is not None else None
    if meta is not None:
        meta.setdefault('control_mode', env.action_spec.control_mode)
    # the layout the model was trained with (a keyframe model expects the first frame in the oldest slot)
    keep_first = bool(getattr(getattr(policy, 'config', None), 'memory_keeps_first_frame', False))
    memory = MemoryFrames(keep_first=keep_first) if use_memory else None
    # Chunks in simulated time, as the real-time stack runs them: `current` = (first step, actions) is what the
    # executor plays; a request made at step k arrives at k + inference_delay_steps (`pending`), and the next is
    # made when it arrives (back to back) but not before execute_steps have passed.
    dt = float(getattr(env, 'control_period', 0.1))
    current: tuple[int, np.ndarray] | None = None
    pending: tuple[int, int, np.ndarray] | None = None   # (arrival step, first step, actions)
    next_request = 0
    frozen: list[int] = []
    inference_ms: list[float] = []
    subtask, last_hl, history = None, -np.inf, []
    steps = 0
    dwell = confirm = None
    if gripper_dwell_s > 0 or gripper_confirm_s > 0:   # the gripper is the last dimension
        spec = env.action_spec
        gripper_threshold = 0.5 * float(spec.low[-1] + spec.high[-1])
        if gripper_dwell_s > 0:   # as the chunk executor does with gripper_min_dwell_s
            dwell = GripperDwell(len(spec.low) - 1, gripper_threshold, gripper_dwell_s)
        if gripper_confirm_s > 0:   # as the action expert does with gripper_confirm_lead_s
            confirm = GripperSwitchConfirm(len(spec.low) - 1, gripper_threshold, gripper_confirm_s)
    initial_target = getattr(env, 'current_target', None)   # the gripper value last commanded
    commanded_gripper: float | None = float(initial_target()[-1]) if initial_target is not None else None
    confirmations, confirming = 0, False   # confirming: synchronous until the gripper switch is obeyed
    t0 = time.perf_counter()

    def request_chunk(obs, subtask) -> None:
        """Ask for a chunk from `obs`; with pause chunking, or while a gripper switch is being confirmed, the robot
        holds still until it arrives, plays its first rows from row 0 (execute_steps; the confirmation's trusted
        rows), then holds for the next."""
        nonlocal current, pending, next_request, confirmations, confirming
        request = {'images': obs['images'], 'state': obs['state'], 'task': task.instruction if use_task else None,
                   'subtask': subtask if subtask_source != 'none' else None, 'metadata': meta, 'mode': 'sync'}
        if memory is not None:
            request['memory_images'] = memory.get()
        if subgoal_fn is not None:
            request['subgoal_images'] = subgoal_fn(obs, subtask, request['task'], meta)
        start = steps
        synchronous = chunking == 'pause' or confirming
        if chunking == 'rtc' and current is not None and not synchronous:   # the action expert's plan, in steps
            plan = plan_request(PublishedChunk(current[0] * dt, dt, current[1]), steps * dt, dt,
                                inference_delay_steps * dt, execution_horizon)
            if plan.prev_actions is not None:
                request.update(prev_actions=plan.prev_actions, delay_steps=plan.delay_steps,
                               execution_horizon=plan.execution_horizon, mode='rtc')
                start = int(round(plan.start_time / dt))
        out = policy.infer(request)
        inference_ms.append(out['inference_ms'])
        frozen.append(int(out.get('frozen_steps', 0)))
        actions = np.asarray(out['actions'])
        arrival = steps + inference_delay_steps
        if synchronous:   # held still until it arrives, then its first rows from row 0, then held
            rows = confirm.trusted_rows(dt) if confirming else max(1, execute_steps)
            pending = (arrival, arrival, actions[:rows])
            next_request = arrival + len(pending[2])
            if confirming and confirm.switches(pending[2], commanded_gripper):   # as the action expert: this
                confirming, next_request = False, arrival   # chunk makes the switch, asynchronous again at once
        else:
            held_at = None
            if confirm is not None:   # as the action expert publishes it: a late chunk is cut short of its switch
                # the gripper as the robot will command it when this chunk takes over (the one playing, at arrival)
                gripper = commanded_gripper if current is None else \
                    float(current[1][min(arrival - current[0], len(current[1]) - 1)][-1])
                actions, held_at = confirm.hold_before_switch(actions, gripper, arrival - start, (start - steps) * dt,
                                                              dt)
            pending = (arrival, start, actions)
            next_request = steps + max(min(execute_steps, len(actions)), inference_delay_steps, 1)
            if held_at is not None:   # look again, synchronously, once the robot stands at the held row
                confirmations, confirming = confirmations + 1, True
                next_request = max(arrival, start + held_at)
        if inference_delay_steps == 0:   # synchronous: the world waited for it
            current, pending = pending[1:], None

    while not env.done() and (max_time_s is None or env.time < max_time_s):
        if memory is not None:
            memory.add(obs['images'], obs['time'])
        if subtask_source == 'plan':
            done, total = env.progress()
            subtask = task.plan[done] if done < total else None
        elif subtask_source == 'high_level' and high_level is not None and obs['time'] - last_hl >= \
                high_level_period_s:
            last_hl = obs['time']
            out = high_level.infer({'images': obs['images'], 'task': task.instruction, 'metadata': meta,
                                    'memory': f"Done: {'; '.join(history)}." if history else '',
                                    'subtask_history': history})
            new = None if out['task_done'] else out['subtask']
            if subtask is not None and new != subtask:
                history.append(subtask)
            subtask = new
        if pending is not None and steps >= pending[0]:   # the chunk on its way arrives
            current, pending = pending[1:], None
        if pending is None and steps >= next_request:
            request_chunk(obs, subtask)
        if current is None:   # the first chunk is still on its way: the robot holds its target
            hold = getattr(env, 'current_target', None)
            action = np.asarray(hold() if hold is not None else obs['state'], np.float32)
        else:   # the row for this step (the last one held once the chunk is over), as the executor does
            action = current[1][min(steps - current[0], len(current[1]) - 1)]
        if dwell is not None:
            action, _ = dwell.apply(action, float(env.time))
        commanded_gripper = float(action[-1])
        if on_frame is not None:
            on_frame({'obs': obs, 'action': action, 'subtask': subtask})
        obs = env.step(action)
        steps += 1
    done, total = env.progress()
    # where a "put it back" subtask's block ended, from where it started (privileged: for diagnosis only)
    origin_error = {s.obj: round(float(np.linalg.norm(env.block_position(s.obj)[:2] - task.layout.blocks[s.obj][:2])),
                                 4) for s in getattr(task, 'subtasks', ()) if s.target == 'origin'}
    return {'seed': int(seed), 'success': bool(env.success()), 'progress': done / max(total, 1),
            'subtasks_done': int(done), 'subtasks_total': int(total), 'time_s': round(float(env.time), 2),
            'steps': steps, 'instruction': task.instruction,
            'final_state': [round(float(v), 6) for v in np.asarray(obs['state']).ravel()],
            'inference_ms_median': float(np.median(inference_ms)) if inference_ms else 0.0,
            'rtc_frozen_mean': float(np.mean(frozen)) if frozen else 0.0,
            **({'gripper_confirmations': confirmations} if confirm is not None else {}),
            **({'origin_error_m': origin_error} if origin_error else {}),
            'wall_s': round(time.perf_counter() - t0, 1)}


def rollout(policy, env, seeds: Iterable[int], *, progress: bool = True, **kwargs) -> list[dict[str, Any]]:
    """`run_episode` for every seed (see the module docstring for the options)."""
    from tqdm.auto import tqdm
    results = []
    bar = tqdm(list(seeds), desc='rollout', unit='episode', disable=not progress)
    for seed in bar:
        reseed = getattr(policy, 'reseed', None)
        if reseed is not None:   # an episode's noise depends on its seed only: the same results split over jobs
            reseed(seed)
        results.append(run_episode(policy, env, seed, **kwargs))
        bar.set_postfix(success=f"{sum(r['success'] for r in results)}/{len(results)}")
    bar.close()
    return results


def summarize(results: list[dict[str, Any]]) -> dict[str, Any]:
    if not results:
        return {'episodes': 0}
    ok = [r for r in results if r['success']]
    return {'episodes': len(results), 'successes': len(ok), 'success_rate': len(ok) / len(results),
            'mean_progress': float(np.mean([r['progress'] for r in results])),
            'mean_time_s_success': float(np.mean([r['time_s'] for r in ok])) if ok else None,
            'inference_ms_median': float(np.median([r['inference_ms_median'] for r in results])),
            'seeds': [r['seed'] for r in results]}


def _episodes_from_args(args, seeds: list[int], progress: bool = True) -> list[dict[str, Any]]:
    """The CLI's rollout of `seeds` in this process: loads the policy and the environment `args` name."""
    import torch
    torch.set_num_threads(1)
    from pi07_sim.env import TabletopEnv

    from ..models.vla.policy import VLAPolicy
    policy = VLAPolicy.from_checkpoint(args.checkpoint, expected_embodiment=args.embodiment,
                                       noise_scale=args.noise_scale, rtc_method=args.rtc_method)
    hl = None
    if args.high_level:
        from ..models.high_level import HighLevelPolicy
        hl = HighLevelPolicy.from_checkpoint(args.high_level)
    world_model = None
    if args.world_model:
        from pi07_world_model.modeling_world_model import WorldModel
        world_model = WorldModel.from_pretrained(args.world_model).eval()
    env = TabletopEnv(args.embodiment, args.family, image_size=args.image_size)
    if args.observation_delay_steps > 0:
        env = StaleObservations(env, args.observation_delay_steps)
    meta = None if args.no_metadata else {'speed': args.speed, 'quality': args.quality,
                                          'mistake': bool(args.mistake)}
    results = []
    try:
        for seed in seeds:   # one episode at a time: the subgoals of one episode are not shown in the next
            subgoals = None
            if world_model is not None:
                subgoals = WorldModelSubgoals(lambda obs, seed: _generate(world_model, obs, seed),
                                              args.subgoal_period_s, seed=0)
            results += rollout(policy, env, [seed], execute_steps=args.execute_steps,
                               subtask_source=args.subtask_source, metadata=meta, use_memory=args.memory,
                               high_level=hl, progress=False, max_time_s=args.max_time_s, subgoal_fn=subgoals,
                               gripper_dwell_s=args.gripper_dwell_s,
                               inference_delay_steps=args.inference_delay_steps, chunking=args.chunking,
                               execution_horizon=args.execution_horizon,
                               gripper_confirm_s=args.gripper_confirm_s)
            if progress:
                ok = sum(r['success'] for r in results)
                print(f'rollout {len(results)}/{len(seeds)}: seed {seed} '
                      f"{'SUCCEEDED' if results[-1]['success'] else 'failed'} (success {ok}/{len(results)})",
                      flush=True)
    finally:
        env.close()
    return results


def _generate(world_model, obs: Mapping[str, Any], seed: int | None) -> dict:
    import torch
    with torch.inference_mode():
        return world_model.generate(obs, seed=seed)


def over_seed_shares(fn: Callable[[list[int]], Any], seeds: list[int], jobs: int, desc: str | None = None) -> list:
    """`fn(share)` for `seeds` split over `jobs` spawned processes (share i: seeds[i::jobs]); its returns, in share
    order. `fn` must pickle (a module-level function, or a functools.partial of one). Each episode's noise depends
    on its seed only (`VLAPolicy.reseed`), so the split changes no episode. `desc`: a progress bar over the shares."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from tqdm.auto import tqdm
    shares = [seeds[i::jobs] for i in range(jobs) if seeds[i::jobs]]
    with ProcessPoolExecutor(len(shares), mp_context=multiprocessing.get_context('spawn')) as pool:
        futures = [pool.submit(fn, share) for share in shares]
        return [f.result() for f in tqdm(futures, desc=desc, unit='job', disable=desc is None)]


def rollout_jobs(args, seeds: list[int], jobs: int) -> list[dict[str, Any]]:
    """`seeds` split over `jobs` processes (one torch thread each), results in seed order: those of one process."""
    parts = over_seed_shares(functools.partial(_episodes_from_args, args, progress=False), seeds, jobs,
                             desc=f'rollout ({min(jobs, len(seeds))} jobs)')
    return sorted((r for part in parts for r in part), key=lambda r: r['seed'])


def build_parser(description: str = 'closed-loop rollouts of a VLA checkpoint in pi07_sim, no ROS'):
    """The CLI's options (also the base of `pi07_policy.evaluate_delay`'s)."""
    import argparse
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument('--checkpoint', required=True)
    parser.add_argument('--embodiment', default='arm7')
    parser.add_argument('--family', default='ordered_place')
    parser.add_argument('--seeds', type=int, nargs=2, default=[10000, 10010], metavar=('FIRST', 'END'))
    parser.add_argument('--execute-steps', type=int, default=5)
    parser.add_argument('--subtask-source', default='plan', choices=['plan', 'none', 'high_level'])
    parser.add_argument('--high-level', default=None, help='HighLevelPolicy checkpoint (subtask-source high_level)')
    parser.add_argument('--no-metadata', action='store_true')
    parser.add_argument('--memory', action='store_true')
    parser.add_argument('--quality', type=int, default=5)
    parser.add_argument('--speed', type=int, default=4)
    parser.add_argument('--mistake', type=int, default=0)
    parser.add_argument('--image-size', type=int, default=96)
    parser.add_argument('--observation-delay-steps', type=int, default=0,
                        help='the policy sees observations this many control steps old (real-time latency)')
    parser.add_argument('--noise-scale', type=float, default=1.0,
                        help='scale of the initial flow noise (0: deterministic chunks)')
    parser.add_argument('--world-model', default=None,
                        help='world-model checkpoint: subgoal images in the prompt, made as the world-model node does')
    parser.add_argument('--subgoal-period-s', type=float, default=3.0,
                        help='with --world-model: regenerate this often while a subtask lasts (and on a new one)')
    parser.add_argument('--max-time-s', type=float, default=None,
                        help='end each episode after this much simulated time (default: the task\'s own limit)')
    parser.add_argument('--inference-delay-steps', type=int, default=0,
                        help='each chunk arrives this many control steps after its observation (the world does not '
                             'wait); the previous chunk plays on meanwhile, as in the real-time stack')
    parser.add_argument('--chunking', default='sync', choices=list(CHUNKING),
                        help='sync: each chunk sampled from scratch, switched to on arrival (naive asynchronous); rtc: '
                             'Real-Time Chunking against the chunk being played (the action expert\'s plan_request); '
                             'pause: synchronous, the robot holds while each chunk is computed')
    parser.add_argument('--execution-horizon', type=int, default=8,
                        help='RTC guidance: rows of the previous chunk the new one is guided toward (the action '
                             'expert\'s execution_horizon)')
    parser.add_argument('--rtc-method', default='auto', choices=['auto', 'guidance', 'frozen'],
                        help='RTC: guided inpainting, or the frozen rows given to a model trained with training-time '
                             'RTC (auto: frozen for such a model; the action expert\'s rtc_method)')
    parser.add_argument('--gripper-dwell-s', type=float, default=0.0,
                        help='after the gripper switches, obey the opposite command only this much later (the '
                             'executor\'s gripper_min_dwell_s; 0 = off)')
    parser.add_argument('--gripper-confirm-s', type=float, default=0.0,
                        help='a chunk whose first row to play was planned more than this long after its observation '
                             'stops the robot before its first gripper switch, and a chunk taken with the robot '
                             'still decides it (the action expert\'s gripper_confirm_lead_s; 0 = off)')
    parser.add_argument('--jobs', type=int, default=1,
                        help='split the seeds over this many processes (one torch thread each; same results)')
    parser.add_argument('--out', default=None, help='write results + summary as JSON here')
    return parser


def check_args(parser, args) -> None:
    if args.jobs < 1:
        parser.error(f'--jobs must be >= 1, got {args.jobs}')
    if args.inference_delay_steps < 0:
        parser.error(f'--inference-delay-steps must be >= 0, got {args.inference_delay_steps}')
    if not args.gripper_confirm_s >= 0:
        parser.error(f'--gripper-confirm-s must be >= 0, got {args.gripper_confirm_s}')
    if not args.gripper_dwell_s >= 0:
        parser.error(f'--gripper-dwell-s must be >= 0, got {args.gripper_dwell_s}')


def run_seeds(args, seeds: list[int]) -> list[dict[str, Any]]:
    """The episodes of `seeds` as `args` (the CLI's options) asks, over args.jobs processes."""
    return rollout_jobs(args, seeds, args.jobs) if args.jobs > 1 else _episodes_from_args(args, seeds)


def main(argv: list[str] | None = None) -> int:
    """python -m pi07_policy.data.rollout --checkpoint CKPT --embodiment arm7 --seeds 10000 10010 [--out f.json]"""
    import json
    parser = build_parser()
    args = parser.parse_args(argv)
    check_args(parser, args)
    seeds = list(range(*args.seeds))
    results = run_seeds(args, seeds)
    summary = summarize(results)
    print(json.dumps(summary))
    if args.out:
        from pathlib import Path
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({'summary': summary, 'episodes': results,
                                              'args': vars(args)}, indent=1))
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
