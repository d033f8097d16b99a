"""Closed-loop evaluation of the pi07 stack on the simulated robot, through the full ROS graph.

From a profile and its checkpoints the embedded runner brings up sim + memory + high_level_policy + world_model +
action_expert + chunk_executor (or the subset a configuration needs). For each held-out seed (≥ 10000; data
collection uses small seeds) the evaluator resets the sim's episode (``reset_episode``), lets the stack run it in
real time and waits for the terminal ``task_status`` (SUCCEEDED, or FAILED at the 30 s limit), recording success,
progress, episode time, inference latency and the smoothness of the robot's path. Ablations run in the same
invocation: prompt components (language only, + metadata, + subgoal images, + memory), RTC vs synchronous
execution under injected delays, and metadata steering (quality 5 / no mistake vs quality 2). The stack restarts
only when the node selection changes; everything else is set live through ``action_expert/set_parameters``.
The table goes to ``<out>/eval.json`` and ``<out>/eval.md``. docs/evaluation.md explains every column::

    evaluate --profile sim_arm7 --seeds 3 --configs all --out out/eval/sim_arm7
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

FIRST_HELD_OUT_SEED = 10000
SIM_TIME_LIMIT_S = 30.0   # pi07_sim's episode limit (tasks.py)
MAIN_FAMILY = 'ordered_place'
MEMORY_FAMILY = 'restore_layout'
ALL_NODES = ('sim', 'memory', 'high_level_policy', 'world_model', 'action_expert', 'chunk_executor')
LANGUAGE_NODES = ('sim', 'high_level_policy', 'action_expert', 'chunk_executor')
DELAYS_MS = (0, 100, 200, 300)
# Execution under delay: rtc (Real-Time Chunking), sync (each chunk from scratch, switched to on arrival: the RTC
# paper's naive asynchronous baseline), each also with gripper switches confirmed (rtc_confirm, sync_confirm: a chunk
# whose first row to play was planned more than GRIPPER_CONFIRM_LEAD_S after its observation stops the robot before
# its first gripper switch, and a chunk taken with the robot still decides it: the action expert's
# gripper_confirm_lead_s), and pause (synchronous: the robot holds while each chunk is computed).
DELAY_MODES = ('rtc', 'rtc_confirm', 'sync', 'sync_confirm', 'pause')
PAUSE_ROWS = 5   # rows of each chunk played in pause mode (half a 10-row chunk) before the next inference
GRIPPER_CONFIRM_LEAD_S = 0.3

# The action expert's live parameters every configuration sets (so nothing leaks from the previous one).
EXPERT_DEFAULTS: dict[str, Any] = {
    'mode': 'rtc', 'injected_delay_s': 0.0, 'execution_horizon': 8, 'gripper_confirm_lead_s': 0.0,
    'use_metadata': True, 'use_subgoals': True,
    'use_visual_memory': True, 'metadata_speed': -1, 'metadata_quality': -1, 'metadata_mistake': -1}
# "Metadata" in the prompt: the sim's Task carries only the control mode, so the evaluation asks for the
# behaviour of the best demonstrations (quality 5, no mistake) and leaves the speed to the model.
GOOD_METADATA = {'metadata_quality': 5, 'metadata_mistake': 0}
POOR_METADATA = {'metadata_quality': 2, 'metadata_mistake': -1}


# ------------------------------------------------------------------------------------------------ configurations
@dataclass(frozen=True)
class EvalConfig:
    """One row group of the table: which nodes run, the action expert's parameters, the task families."""
    name: str
    description: str
    group: str                              # prompt | delay | steering
    nodes: tuple[str, ...]
    expert: tuple[tuple[str, Any], ...]     # action_expert parameters (over EXPERT_DEFAULTS)
    families: tuple[str, ...] = (MAIN_FAMILY,)
    driver: str = 'policy'                  # policy: the pi07 stack; scripted: pi07_sim's privileged expert node

    def expert_parameters(self) -> dict[str, Any]:
        return dict(EXPERT_DEFAULTS, **dict(self.expert)) if self.driver == 'policy' else {}

    def stack_key(self) -> tuple[str, ...]:
        """What a stack start depends on: the nodes (in bring-up order) and who drives the robot."""
        return tuple(n for n in ALL_NODES if n in self.nodes) + ((f'driver:{self.driver}',)
                                                                 if self.driver != 'policy' else ())

    def run_key(self, family: str) -> tuple:
        """Configurations with the same key run the same episodes: they are run once and shared."""
        return (self.stack_key(), tuple(sorted(self.expert_parameters().items())), family)


def _config(name, description, group, nodes, families=(MAIN_FAMILY,), driver='policy', **expert) -> EvalConfig:
    return EvalConfig(name, description, group, tuple(nodes), tuple(sorted(expert.items())), tuple(families),
                      driver)


def all_configs() -> list[EvalConfig]:
    """Every configuration, in table order."""
    no_prompt_extras = dict(use_metadata=False, use_subgoals=False, use_visual_memory=False)
    with_metadata = dict(no_prompt_extras, use_metadata=True, **GOOD_METADATA)
    with_subgoals = dict(with_metadata, use_subgoals=True)
    full = dict(with_subgoals, use_visual_memory=True)
    configs = [
        # The reference: the sim's scripted expert (privileged state) drives the same sim through the same command
        # topics. It bounds what the task allows in this time limit and checks the success path end to end.
        _config('scripted_expert', 'pi07_sim\'s scripted expert (privileged state), not the pi07 policy',
                'reference', ('sim',), (MAIN_FAMILY, MEMORY_FAMILY), driver='scripted'),
        _config('language_only', 'task + subtask text, no metadata, subgoals, memory or world model', 'prompt',
                LANGUAGE_NODES, **no_prompt_extras),
        _config('metadata', '+ metadata (quality 5, no mistake)', 'prompt', LANGUAGE_NODES, **with_metadata),
        _config('subgoals', '+ subgoal images from the world model', 'prompt',
                LANGUAGE_NODES[:2] + ('world_model',) + LANGUAGE_NODES[2:], (MAIN_FAMILY, MEMORY_FAMILY),
                **with_subgoals),
        _config('memory', '+ short-term visual memory (the full stack)', 'prompt', ALL_NODES,
                (MAIN_FAMILY, MEMORY_FAMILY), **full),
    ]
    for mode in DELAY_MODES:
        # pause plays PAUSE_ROWS rows of each chunk, then holds for the next (execution_horizon is its row count)
        expert = {'pause': dict(mode='pause', execution_horizon=PAUSE_ROWS),
                  'rtc_confirm': dict(mode='rtc', gripper_confirm_lead_s=GRIPPER_CONFIRM_LEAD_S),
                  'sync_confirm': dict(mode='sync', gripper_confirm_lead_s=GRIPPER_CONFIRM_LEAD_S)}.get(
                      mode, dict(mode=mode))
        for delay in DELAYS_MS:
            configs.append(_config(f'{mode}_d{delay}', f'{mode}, {delay} ms injected inference delay', 'delay',
                                   ALL_NODES, **dict(full, injected_delay_s=delay / 1000.0, **expert)))
    configs.append(_config('steer_q5', 'full stack prompted with quality 5, no mistake', 'steering', ALL_NODES,
                           **full))
    configs.append(_config('steer_q2', 'full stack prompted with quality 2', 'steering', ALL_NODES,
                           **dict(full, **POOR_METADATA)))
    return configs


CONFIG_SETS = {
    'all': None,
    'prompt': ('language_only', 'metadata', 'subgoals', 'memory'),
    'reference': ('scripted_expert',),
    'delay': tuple(f'{m}_d{d}' for m in DELAY_MODES for d in DELAYS_MS),
    'steering': ('steer_q5', 'steer_q2'),
    'full': ('memory',),
}


def select_configs(spec: str, available_nodes: Iterable[str] | None = None) -> list[EvalConfig]:
    """``spec``: comma-separated configuration names or sets (all, prompt, delay, steering, full). Configurations
    needing a node the profile cannot run (e.g. no world model checkpoint) are refused by name."""
    by_name = {c.name: c for c in all_configs()}
    wanted: list[str] = []
    for item in [s.strip() for s in spec.split(',') if s.strip()]:
        if item in CONFIG_SETS:
            wanted += list(CONFIG_SETS[item] or by_name)
        elif item in by_name:
            wanted.append(item)
        else:
            raise ValueError(f'unknown configuration {item!r}; known: {", ".join(list(CONFIG_SETS) + list(by_name))}')
    configs = [by_name[n] for n in dict.fromkeys(wanted)]
    if available_nodes is not None:
        missing = {c.name: sorted(set(c.nodes) - set(available_nodes)) for c in configs}
        missing = {k: v for k, v in missing.items() if v}
        if missing:
            raise ValueError(f'configurations need nodes this profile does not run: {missing}')
    return configs


def with_families(configs: list[EvalConfig], families: Iterable[str]) -> list[EvalConfig]:
    """The configurations run on ``families`` instead of their own (e.g. the prompt ladder on middle_place, the
    family built for subgoal images)."""
    from pi07_sim.tasks import FAMILIES

    families = tuple(dict.fromkeys(families))
    unknown = [f for f in families if f not in FAMILIES]
    if unknown or not families:
        raise ValueError(f'unknown task family {unknown or families!r}; known: {", ".join(FAMILIES)}')
    return [replace(c, families=families) for c in configs]


def run_order(configs: list[EvalConfig]) -> list[tuple[tuple[str, ...], list[EvalConfig]]]:
    """Configurations grouped by stack (node selection and driver: one start per group), smallest first."""
    groups: dict[tuple[str, ...], list[EvalConfig]] = {}
    for config in configs:
        groups.setdefault(config.stack_key(), []).append(config)
    return sorted(groups.items(), key=lambda item: len(item[0]))


# ------------------------------------------------------------------------------------------------ metrics
@dataclass
class Episode:
    config: str
    family: str
    seed: int
    task_id: str = ''
    instruction: str = ''
    state: str = 'error'          # succeeded | failed (the sim's time limit) | cut (--max-episode-s) | error
    success: bool = False
    subtasks_done: int = 0
    subtasks_total: int = 0
    progress: float = 0.0
    episode_time_s: float = 0.0   # simulated time from the reset to the terminal status
    wall_s: float = 0.0
    first_chunk_s: float = 0.0    # wall time from the reset to the first chunk computed in this episode
    chunks: int = 0
    latency_ms: list[float] = field(default_factory=list)
    frozen_prefix_mean: float = float('nan')   # rows each chunk kept of the one before (RTC; 0 otherwise)
    jerk_rms: float = float('nan')
    path_length: float = float('nan')
    message: str = ''
    timeline: list[tuple[float, int]] = field(default_factory=list)   # (elapsed_s, subtasks_done) at changes

    def record(self) -> dict:
        out = asdict(self)
        latency = out.pop('latency_ms')
        out['latency_p50_ms'] = _percentile(latency, 50)
        out['latency_p95_ms'] = _percentile(latency, 95)
        return {k: _clean(v) for k, v in out.items()}


def _percentile(values, q) -> float:
    return float(np.percentile(values, q)) if len(values) else float('nan')


def _clean(value):
    """JSON has no NaN: None instead."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def path_metrics(times: np.ndarray, positions: np.ndarray, dt: float = 0.1) -> tuple[float, float]:
    """(RMS jerk, path length) of a measured path resampled on the control grid ``dt``.

    Jerk = third finite difference / dt³ of the positions (units/s³, norm over dimensions); a wobbly, hesitant
    path has more of it than a smooth one. Path length = sum of the norms of the steps."""
    times = np.asarray(times, dtype=np.float64)
    positions = np.asarray(positions, dtype=np.float64)
    if len(times) < 2 or times[-1] - times[0] < 4 * dt:
        return float('nan'), float('nan')
    order = np.argsort(times)
    times, positions = times[order], positions[order]
    grid = np.arange(times[0], times[-1], dt)
    resampled = np.stack([np.interp(grid, times, positions[:, j]) for j in range(positions.shape[1])], axis=1)
    steps = np.diff(resampled, axis=0)
    jerk = np.diff(resampled, n=3, axis=0) / dt ** 3
    return float(np.sqrt(np.mean(np.sum(jerk ** 2, axis=1)))), float(np.sum(np.linalg.norm(steps, axis=1)))


def summarize(episodes: list[Episode]) -> dict:
    """The table row of a configuration and family."""
    n = len(episodes)
    latency = [v for e in episodes for v in e.latency_ms]
    finite = lambda values: [v for v in values if v is not None and math.isfinite(v)]
    succeeded = [e for e in episodes if e.success]
    row = {
        'episodes': n,
        'success_rate': sum(e.success for e in episodes) / n if n else float('nan'),
        'progress': float(np.mean([e.progress for e in episodes])) if n else float('nan'),
        'episode_time_s': float(np.mean([e.episode_time_s for e in episodes])) if n else float('nan'),
        'success_time_s': float(np.mean([e.episode_time_s for e in succeeded])) if succeeded else float('nan'),
        'latency_p50_ms': _percentile(latency, 50),
        'latency_p95_ms': _percentile(latency, 95),
        'chunk_rate_hz': (sum(e.chunks for e in episodes) / sum(e.wall_s for e in episodes)
                          if sum(e.wall_s for e in episodes) > 0 else float('nan')),
        'jerk_rms': float(np.mean(finite([e.jerk_rms for e in episodes]))) if finite(
            [e.jerk_rms for e in episodes]) else float('nan'),
        'errors': sum(e.state == 'error' for e in episodes),
    }
    return {k: _clean(v) for k, v in row.items()}


def comparisons(rows: list[dict]) -> dict:
    """What the ablations say, as differences between rows (None where a row is missing)."""
    by = {(r['config'], r['family']): r['summary'] for r in rows}

    def diff(a, b, key, family=MAIN_FAMILY):
        ra, rb = by.get((a, family)), by.get((b, family))
        if ra is None or rb is None or ra.get(key) is None or rb.get(key) is None:
            return None
        return ra[key] - rb[key]

    out: dict[str, Any] = {'prompt': {}, 'delay': {}, 'steering': {}}
    ladder = ['language_only', 'metadata', 'subgoals', 'memory']
    families = dict.fromkeys(family for _, family in by)
    for lower, upper in zip(ladder, ladder[1:]):
        for family in families:
            value = diff(upper, lower, 'success_rate', family)
            if value is not None:
                out['prompt'][f'{upper} - {lower} success ({family})'] = value
    out['delay_jerk'] = {}
    for mode in DELAY_MODES:
        curve = {d: by.get((f'{mode}_d{d}', MAIN_FAMILY), {}).get('success_rate') for d in DELAYS_MS}
        if any(v is not None for v in curve.values()):
            out['delay'][mode] = {f'{d} ms': v for d, v in curve.items()}
        # Smoothness against delay: where the executor switches to a late chunk, sync jumps and RTC does not.
        jerk = {d: by.get((f'{mode}_d{d}', MAIN_FAMILY), {}).get('jerk_rms') for d in DELAYS_MS}
        if any(v is not None for v in jerk.values()):
            out['delay_jerk'][mode] = {f'{d} ms': v for d, v in jerk.items()}
    for key in ('success_rate', 'progress', 'episode_time_s', 'jerk_rms'):
        value = diff('steer_q5', 'steer_q2', key)
        if value is not None:
            out['steering'][f'q5 - q2 {key}'] = value
    if out['steering']:
        # The label's direction: quality 5 should succeed more, finish sooner and move more smoothly.
        # Differences inside the noise floor do not count: the terminal status comes at 2 Hz (time ± 0.5 s), and
        # jerk varies by a few per cent between runs of one configuration.
        q2 = by.get(('steer_q2', MAIN_FAMILY), {})
        better = {'success_rate': (1, 0.0), 'progress': (1, 0.0), 'episode_time_s': (-1, 1.0),
                  'jerk_rms': (-1, 0.05 * abs(q2.get('jerk_rms') or 0.0))}
        out['steering']['in the label\'s direction'] = sorted(
            k for k, (sign, floor) in better.items() if (out['steering'].get(f'q5 - q2 {k}') or 0) * sign > floor)
    return out


def _fmt(value, spec='.2f', scale=1.0, unit='') -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return '–'
    return f'{value * scale:{spec}}{unit}'


def markdown_table(report: dict) -> str:
    """The Markdown version of the report (docs/evaluation.md explains the columns)."""
    lines = [f'# Closed-loop evaluation: {report["profile"]} ({report["embodiment"]})', '',
             f'{len(report["seeds"])} held-out seed(s) per row ({report["seeds"][0]}…{report["seeds"][-1]}), '
             f'{report["duration_s"] / 60:.1f} min, checkpoints: {report["checkpoint_note"]}.', '']
    if report.get('aborted'):
        lines += [f'**Aborted**: {report["aborted"]} (rows hold the episodes run before).', '']
    lines += ['| config | family | episodes | success | progress | episode time (s) | time when ok (s) | '
              'latency p50 / p95 (ms) | chunks/s | RMS jerk | what it is |',
              '|---|---|---|---|---|---|---|---|---|---|---|']
    for row in report['rows']:
        s = row['summary']
        lines.append(
            f'| {row["config"]} | {row["family"]} | {s["episodes"]} | {_fmt(s["success_rate"], ".0%")} | '
            f'{_fmt(s["progress"], ".2f")} | {_fmt(s["episode_time_s"], ".1f")} | {_fmt(s["success_time_s"], ".1f")}'
            f' | {_fmt(s["latency_p50_ms"], ".0f")} / {_fmt(s["latency_p95_ms"], ".0f")} | '
            f'{_fmt(s["chunk_rate_hz"], ".1f")} | {_fmt(s["jerk_rms"], ".2f")} | {row["description"]} |')
    comp = report.get('comparisons', {})
    if comp.get('delay'):
        lines += ['', '## Success rate against injected delay', '',
                  '| mode | ' + ' | '.join(f'{d} ms' for d in DELAYS_MS) + ' |',
                  '|---|' + '---|' * len(DELAYS_MS)]
        for mode, curve in comp['delay'].items():
            lines.append(f'| {mode} | ' + ' | '.join(_fmt(curve.get(f'{d} ms'), '.0%') for d in DELAYS_MS) + ' |')
    if comp.get('delay_jerk'):
        lines += ['', '## RMS jerk of the robot\'s path against injected delay', '',
                  '| mode | ' + ' | '.join(f'{d} ms' for d in DELAYS_MS) + ' |',
                  '|---|' + '---|' * len(DELAYS_MS)]
        for mode, curve in comp['delay_jerk'].items():
            lines.append(f'| {mode} | ' + ' | '.join(_fmt(curve.get(f'{d} ms'), '.1f') for d in DELAYS_MS) + ' |')
    if comp.get('steering'):
        lines += ['', '## Steering (quality 5 / no mistake minus quality 2)', '']
        for key, value in comp['steering'].items():
            lines.append(f'- {key}: {value if isinstance(value, list) else _fmt(value, ".3f")}')
    if comp.get('prompt'):
        lines += ['', '## Prompt components (success-rate differences)', '']
        lines += [f'- {key}: {_fmt(value, "+.0%")}' for key, value in comp['prompt'].items()]
    return '\n'.join(lines) + '\n'


# ------------------------------------------------------------------------------------------------ the ROS side
class EpisodeProbe:
    """The evaluator's own node: episode resets, live parameters, and what the stack does (spun in a thread)."""

    def __init__(self, namespace: str, state_names: list[str], record_camera: str | None = None):
        import rclpy
        from pi07_common.qos import LATCHED, SENSOR, STREAM
        from rclpy.executors import SingleThreadedExecutor
        from sensor_msgs.msg import Image, JointState

        from pi07_msgs.msg import ActionChunk, Task, TaskStatus
        from pi07_msgs.srv import ResetEpisode

        if not rclpy.ok():
            rclpy.init(args=[])
        self.node = rclpy.create_node('pi07_evaluate', namespace=namespace or None)
        self._lock = threading.Lock()
        self._state_names = state_names
        self.statuses: list = []
        self.chunks: list[tuple[float, Any]] = []
        self.joint_path: list[tuple[float, np.ndarray]] = []
        self.frames: list[np.ndarray] = []
        self.recording = False
        self._last_frame_time = 0.0
        self.task = None
        n = self.node
        n.create_subscription(TaskStatus, 'task_status', self._on_status, STREAM)
        n.create_subscription(ActionChunk, 'action_chunk', self._on_chunk, STREAM)
        n.create_subscription(JointState, 'joint_states', self._on_joint_state, SENSOR)
        n.create_subscription(Task, 'task', self._on_task, LATCHED)
        if record_camera:
            n.create_subscription(Image, f'camera/{record_camera}/image_raw', self._on_image, SENSOR)
        self._reset = n.create_client(ResetEpisode, 'reset_episode')
        self._param_clients: dict[str, Any] = {}
        self._executor = SingleThreadedExecutor()
        self._executor.add_node(n)
        self._thread = threading.Thread(target=self._executor.spin, daemon=True)
        self._thread.start()

    # --- subscriptions ---------------------------------------------------------------------------------------
    def _on_status(self, msg) -> None:
        with self._lock:
            self.statuses.append(msg)

    def _on_chunk(self, msg) -> None:
        with self._lock:
            self.chunks.append((time.time(), msg))

    def _on_task(self, msg) -> None:
        with self._lock:
            self.task = msg

    def _on_joint_state(self, msg) -> None:
        from pi07_common.node_utils import stamp_to_sec

        index = {name: i for i, name in enumerate(msg.name)}
        if not all(name in index for name in self._state_names):
            return
        with self._lock:
            self.joint_path.append((stamp_to_sec(msg.header.stamp),
                                    np.array([msg.position[index[n]] for n in self._state_names])))

    def _on_image(self, msg) -> None:
        from pi07_common.images import image_to_rgb

        if not self.recording or time.monotonic() - self._last_frame_time < 0.19:  # ≈ 5 frames/s is plenty
            return
        self._last_frame_time = time.monotonic()
        try:
            frame = image_to_rgb(msg)
        except Exception:  # a GIF frame is not worth failing an evaluation for
            return
        with self._lock:
            self.frames.append(frame.copy())

    def clear(self) -> None:
        with self._lock:
            self.statuses, self.chunks, self.joint_path = [], [], []

    def snapshot(self):
        with self._lock:
            return list(self.statuses), list(self.chunks), list(self.joint_path)

    # --- services ---------------------------------------------------------------------------------------------
    def _wait(self, future, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while not future.done() and time.monotonic() < deadline:
            time.sleep(0.02)
        if not future.done():
            raise TimeoutError(f'no answer from {what} in {timeout:.0f} s')
        return future.result()

    def reset_episode(self, seed: int, family: str, timeout: float = 20.0):
        from pi07_msgs.srv import ResetEpisode

        if not self._reset.wait_for_service(timeout_sec=timeout):
            raise TimeoutError('the sim offers no reset_episode service')
        response = self._wait(self._reset.call_async(ResetEpisode.Request(seed=seed, task_family=family)), timeout,
                              'reset_episode')
        if not response.success:
            raise RuntimeError(f'reset_episode refused: {response.message}')
        return response.task

    def set_parameters(self, node: str, values: dict[str, Any], timeout: float = 10.0) -> None:
        from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
        from rcl_interfaces.srv import SetParameters

        client = self._param_clients.get(node)
        if client is None:
            client = self._param_clients[node] = self.node.create_client(SetParameters, f'{node}/set_parameters')
        if not client.wait_for_service(timeout_sec=timeout):
            raise TimeoutError(f'{node}/set_parameters is not offered')
        kinds = {bool: (ParameterType.PARAMETER_BOOL, 'bool_value'), int: (ParameterType.PARAMETER_INTEGER,
                 'integer_value'), float: (ParameterType.PARAMETER_DOUBLE, 'double_value'),
                 str: (ParameterType.PARAMETER_STRING, 'string_value')}
        parameters = []
        for name, value in values.items():
            kind, slot = kinds[type(value)]
            parameters.append(Parameter(name=name, value=ParameterValue(type=kind, **{slot: value})))
        result = self._wait(client.call_async(SetParameters.Request(parameters=parameters)), timeout,
                            f'{node}/set_parameters')
        refused = [f'{p.name}: {r.reason}' for p, r in zip(parameters, result.results) if not r.successful]
        if refused:
            raise RuntimeError(f'{node} refused parameters: {refused}')

    def stop(self) -> None:
        self._executor.shutdown(timeout_sec=2.0)
        self.node.destroy_node()


@dataclass
class EvalOptions:
    profile: str = 'sim_arm7'
    checkpoint_dir: str | None = None
    checkpoints: dict[str, str] = field(default_factory=dict)
    configs: str = 'all'
    seeds: int = 3
    first_seed: int = FIRST_HELD_OUT_SEED
    out: str = 'out/eval'
    namespace: str = ''
    max_episode_s: float = 0.0      # 0: the sim's own limit (30 s); shorter cuts policy episodes (smoke tests)
    gif_episodes: int = 0           # record the scene camera over the first N episodes
    node_parameters: dict[str, dict[str, Any]] = field(default_factory=dict)
    echo_nodes: bool = False
    checkpoint_note: str = ''
    families: tuple[str, ...] = ()  # task families for every configuration (empty: each configuration's own)


class MissingCheckpoints(RuntimeError):
    pass


CHECKPOINT_SUBDIRS = {'action_expert': 'vla', 'high_level_policy': 'high_level', 'world_model': 'world_model'}


def checkpoints_in(directory: str | None) -> dict[str, str]:
    """node -> checkpoint path for a directory laid out like pi07_bringup/checkpoints/<profile>/."""
    if not directory:
        return {}
    return {node: str(Path(directory) / sub) for node, sub in CHECKPOINT_SUBDIRS.items()}


def source_tree_checkpoints(profile_name: str) -> dict[str, str]:
    """pi07_bringup/checkpoints/<profile>/ in the source tree: where the shipped checkpoints live in a checkout
    (an installed profile's relative paths point into the install space, which may not hold them)."""
    return checkpoints_in(str(Path(__file__).resolve().parents[1] / 'checkpoints' / profile_name))


def default_checkpoints(profile) -> dict[str, str]:
    """The profile's checkpoint paths where they exist, else the source tree's shipped checkpoints."""
    own = {node: path for node, path in profile.checkpoints.items() if node in CHECKPOINT_SUBDIRS}
    try:
        check_checkpoints(own, CHECKPOINT_SUBDIRS)
        return own
    except MissingCheckpoints:
        tree = source_tree_checkpoints(Path(profile.source).stem)
        return tree if Path(tree['action_expert']).parent.is_dir() or not Path(own['action_expert']).parent.is_dir() \
            else own


def checkpoint_fingerprints(paths: dict[str, str]) -> dict[str, dict]:
    """Which weights ran: per node, the path and the weights' sha256 from the checkpoint's manifest."""
    out = {}
    for node, path in paths.items():
        try:
            manifest = json.loads((Path(path) / 'config.json').read_text())
            weights = manifest.get('files', {}).get('model.safetensors', {})
            out[node] = {'path': path, 'model_type': manifest.get('model_type'),
                         'weights_sha256': str(weights.get('sha256', ''))[:16]}
        except (OSError, ValueError):
            out[node] = {'path': path}
    return out


def check_checkpoints(paths: dict[str, str], nodes: Iterable[str]) -> None:
    missing = [f'{node}: {paths.get(node) or "(none given)"}' for node in nodes
               if node in ('high_level_policy', 'world_model', 'action_expert')
               and not (paths.get(node) and (Path(paths[node]) / 'config.json').is_file())]
    if missing:
        raise MissingCheckpoints('checkpoint(s) not found:\n  ' + '\n  '.join(missing))


class Evaluator:
    """Runs configurations through the stack; ``log`` receives progress lines."""

    def __init__(self, options: EvalOptions, log: Callable[[str], None] = print):
        from pi07_bringup.profile import load_profile

        self.options = options
        self.log = log
        self.profile = load_profile(options.profile, options.checkpoint_dir)
        self.checkpoints = {**self.profile.checkpoints, **default_checkpoints(self.profile), **options.checkpoints}
        self.configs = select_configs(options.configs)
        if options.families:
            self.configs = with_families(self.configs, options.families)
        check_checkpoints(self.checkpoints, {n for c in self.configs for n in c.nodes})
        self.seeds = list(range(options.first_seed, options.first_seed + options.seeds))
        self.state_names = [n for n in self.profile.action_state_names if 'gripper' not in n]
        self.out = Path(options.out)
        self.frames: list[np.ndarray] = []
        self.episodes: list[Episode] = []
        self._runner = None
        self._probe = None

    # --- stack ------------------------------------------------------------------------------------------------
    def _start_stack(self, config: EvalConfig) -> None:
        from pi07_bringup.graph import NodeSpec, build_graph
        from pi07_bringup.runner import EmbeddedRunner

        nodes = tuple(n for n in ALL_NODES if n in config.nodes)
        overrides = {k: dict(v) for k, v in self.options.node_parameters.items()}
        overrides.setdefault('memory', {}).setdefault('storage_dir', str(self.out / 'memory'))
        overrides.setdefault('sim', {}).setdefault('seed', self.seeds[0])
        specs = build_graph(self.profile, nodes=list(nodes), checkpoints=self.checkpoints,
                            parameter_overrides=overrides)
        if config.driver == 'scripted':  # follows the sim's episodes (episodes=0): each reset is a new one for it
            specs.append(NodeSpec('expert', 'pi07_sim', 'expert', True, {
                'variant': 'expert', 'episodes': 0, 'exit_when_done': False, 'use_sim_time': False}))
        log_dir = self.out / 'logs' / ('+'.join(n for n in nodes if n != 'sim') or 'sim') / config.driver
        self.log(f'starting {", ".join(nodes)} (logs in {log_dir})')
        t0 = time.monotonic()
        self._runner = EmbeddedRunner(specs, self.options.namespace, str(log_dir), echo=self.options.echo_nodes)
        self._runner.start()
        try:
            self._runner.bring_up(timeout=240)
        except Exception:
            self._stop_stack()
            raise
        self.log(f'stack up in {time.monotonic() - t0:.0f} s')

    def _stop_stack(self) -> None:
        if self._runner is not None:
            self._runner.shutdown()
            self._runner = None

    def _ensure(self, node: str, wanted: str) -> None:
        """Bring a lifecycle node to 'active' or 'inactive' (asking its state first: an episode may have failed
        half-way)."""
        state = self._runner.state(node, timeout=10.0)
        if state != wanted:
            self._runner.transition(node, 'activate' if wanted == 'active' else 'deactivate', timeout=40.0)

    # --- one episode --------------------------------------------------------------------------------------------
    def run_episode(self, config: EvalConfig, family: str, seed: int) -> Episode:
        probe, episode = self._probe, Episode(config.name, family, seed)
        policy = config.driver == 'policy'
        # No stale chunk may move the robot into the new episode: the executor commands nothing while inactive,
        # and the action expert restarts its inference thread (and forgets its last chunk) on activation.
        if policy:
            self._ensure('chunk_executor', 'inactive')
            self._ensure('action_expert', 'inactive')
            probe.set_parameters('action_expert', config.expert_parameters())
        task = probe.reset_episode(seed, family)
        reset_wall = time.time()
        probe.clear()
        episode.task_id, episode.instruction = task.task_id, task.instruction
        cut = self.options.max_episode_s if policy else 0.0  # the scripted reference always runs to its end
        limit = cut or SIM_TIME_LIMIT_S
        wall_deadline = time.monotonic() + 2.5 * limit + 20.0   # the sim's clock slips when the CPU is overloaded
        if policy:
            self._ensure('action_expert', 'active')
            if not self._wait_for_fresh_chunk(episode, task.task_id, reset_wall, wall_deadline):
                return episode
            self._ensure('chunk_executor', 'active')
        return self._follow_episode(episode, task.task_id, reset_wall, wall_deadline, policy, cut)

    def _wait_for_fresh_chunk(self, episode: Episode, task_id: str, reset_wall: float, deadline: float) -> bool:
        from pi07_common.node_utils import stamp_to_sec

        probe = self._probe

        # The first chunk computed from an observation after the reset (camera images arrive at 10 Hz).
        def fresh_chunk():
            _, chunks, _ = probe.snapshot()
            return [(t, m) for t, m in chunks if m.task_id == task_id
                    and stamp_to_sec(m.observation_stamp) > reset_wall + 0.15]

        while not fresh_chunk() and time.monotonic() < deadline:
            time.sleep(0.02)
        if not fresh_chunk():
            episode.message = 'no chunk from the action expert'
            return False
        episode.first_chunk_s = fresh_chunk()[0][0] - reset_wall
        return True

    def _follow_episode(self, episode: Episode, task_id: str, reset_wall: float, wall_deadline: float,
                        policy: bool, cut: float) -> Episode:
        """Wait for the terminal status (or the cut), then measure the episode."""
        from pi07_common.node_utils import stamp_to_sec

        from pi07_msgs.msg import TaskStatus

        probe = self._probe
        start = time.monotonic()
        recording = self.options.gif_episodes > 0 and len(self._gif_done) < self.options.gif_episodes
        probe.recording = recording
        terminal, last = None, None
        while time.monotonic() < wall_deadline:
            statuses = [s for s in probe.snapshot()[0] if s.task_id == task_id]
            if statuses:
                last = statuses[-1]
                done = [s for s in statuses if s.state in (TaskStatus.STATE_SUCCEEDED, TaskStatus.STATE_FAILED)]
                if done:
                    terminal = done[0]
                    break
                if cut and last.elapsed_s >= cut:
                    break
            time.sleep(0.05)
        probe.recording = False
        if policy:
            self._ensure('chunk_executor', 'inactive')
        if recording:
            self._gif_done.append(episode.seed)
        episode.wall_s = time.monotonic() - start
        status = terminal or last
        if status is None:
            episode.message = 'no task_status from the sim'
            return episode
        episode.state = {TaskStatus.STATE_SUCCEEDED: 'succeeded', TaskStatus.STATE_FAILED: 'failed'}.get(
            terminal.state if terminal else -1, 'cut')
        episode.success = episode.state == 'succeeded'
        episode.subtasks_done, episode.subtasks_total = int(status.subtasks_done), int(status.subtasks_total)
        episode.progress = float(status.progress)
        episode.episode_time_s = float(status.elapsed_s)
        episode.message = status.message
        statuses = [s for s in probe.snapshot()[0] if s.task_id == task_id]
        for s in statuses:
            if not episode.timeline or s.subtasks_done != episode.timeline[-1][1]:
                episode.timeline.append((round(float(s.elapsed_s), 2), int(s.subtasks_done)))
        _, chunks, path = probe.snapshot()
        episode_chunks = [m for _, m in chunks if m.task_id == task_id]
        episode.chunks = len(episode_chunks)
        episode.latency_ms = [m.inference_latency * 1e3 for m in episode_chunks]
        if episode_chunks:
            episode.frozen_prefix_mean = float(np.mean([m.frozen_prefix for m in episode_chunks]))
        end_stamp = stamp_to_sec(status.header.stamp)
        moving = [(t, q) for t, q in path if reset_wall + episode.first_chunk_s <= t <= end_stamp]
        if moving:
            episode.jerk_rms, episode.path_length = path_metrics(np.array([t for t, _ in moving]),
                                                                 np.stack([q for _, q in moving]),
                                                                 1.0 / self.profile.control_rate_hz)
        return episode

    # --- everything ---------------------------------------------------------------------------------------------
    def run(self) -> dict:
        from pi07_bringup.dds_env import check_safe

        check_safe(os.environ)
        self.out.mkdir(parents=True, exist_ok=True)
        started, t0 = time.strftime('%Y-%m-%dT%H:%M:%S'), time.monotonic()
        plan = run_order(self.configs)
        unique = {c.run_key(f) for c in self.configs for f in c.families}
        total = len(unique) * len(self.seeds)
        self.log(f'profile {self.profile.name}: {len(self.configs)} configuration(s), {total} episode(s) '
                 f'({len(self.seeds)} seed(s) each, from {self.seeds[0]}), {len(plan)} stack start(s)')
        self._probe = EpisodeProbe(self.options.namespace, self.state_names,
                                   self.profile.camera_names[0] if self.options.gif_episodes else None)
        self._gif_done: list[int] = []
        results: dict[tuple, list[Episode]] = {}
        done, aborted = 0, ''
        try:
            for _, configs in plan:
                self._start_stack(configs[0])
                try:
                    for config in configs:
                        for family in config.families:
                            key = config.run_key(family)
                            if key in results:
                                continue
                            results[key] = []
                            for seed in self.seeds:
                                try:
                                    episode = self.run_episode(config, family, seed)
                                except Exception as exc:  # one broken episode must not lose the others
                                    episode = Episode(config.name, family, seed, message=f'{type(exc).__name__}: '
                                                                                         f'{exc}')
                                    if self._runner.dead():
                                        raise
                                results[key].append(episode)
                                done += 1
                                elapsed = time.monotonic() - t0
                                self.log(f'{done}/{total} {config.name} {family} seed {seed}: '
                                         f'{episode.state.upper()} {episode.subtasks_done}/{episode.subtasks_total}'
                                         f' in {episode.episode_time_s:.1f} s, latency p50 '
                                         f'{_fmt(_percentile(episode.latency_ms, 50), ".0f")} ms'
                                         f'{", " + episode.message if episode.state == "error" else ""} '
                                         f'[{elapsed / 60:.1f} min, ~{elapsed / done * (total - done) / 60:.1f} '
                                         'min left]')
                finally:
                    self._stop_stack()
        except (Exception, KeyboardInterrupt) as exc:  # a dead node, a stack that will not come up, Ctrl-C
            aborted = f'{type(exc).__name__}: {exc}'
            self.log(f'aborted: {aborted}\nthe report holds the {done} episode(s) run so far')
        finally:
            self.frames = list(self._probe.frames)
            self.episodes = [e for episodes in results.values() for e in episodes]
            self._probe.stop()
        rows = []
        for config in self.configs:
            for family in config.families:
                episodes = results.get(config.run_key(family), [])
                rows.append({'config': config.name, 'family': family, 'group': config.group,
                             'description': config.description, 'nodes': list(config.nodes),
                             'action_expert': config.expert_parameters(), 'summary': summarize(episodes),
                             'episodes': [dict(e.record(), config=config.name) for e in episodes]})
        report = {
            'profile': self.profile.name, 'embodiment': self.profile.embodiment,
            'checkpoints': checkpoint_fingerprints({k: v for k, v in self.checkpoints.items() if v}),
            'checkpoint_note': self.options.checkpoint_note or (
                'given on the command line' if self.options.checkpoints else 'the profile\'s (shipped)'),
            'seeds': self.seeds, 'max_episode_s': self.options.max_episode_s or SIM_TIME_LIMIT_S,
            'started': started, 'duration_s': time.monotonic() - t0,
            'host': {'cpus': os.cpu_count(), 'load_average': list(os.getloadavg()),
                     'python': platform.python_version()},
            'rows': rows, 'aborted': aborted,
        }
        report['comparisons'] = comparisons(rows)
        return report


def write_report(report: dict, out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / 'eval.json', out / 'eval.md'
    json_path.write_text(json.dumps(report, indent=1, default=_clean) + '\n')
    md_path.write_text(markdown_table(report))
    return json_path, md_path


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--profile', default='sim_arm7', help='profile name (pi07_bringup/config) or YAML path')
    parser.add_argument('--checkpoint-dir', default=None, help='base directory for the profile\'s relative '
                        'checkpoint paths')
    parser.add_argument('--checkpoint', action='append', default=[], metavar='NODE=PATH',
                        help='checkpoint directory of one node (repeatable)')
    parser.add_argument('--checkpoints-in', default=None, metavar='DIR',
                        help='a directory holding vla/, high_level/ and world_model/ (the layout of '
                             'pi07_bringup/checkpoints/<profile>/)')
    parser.add_argument('--configs', default='all',
                        help='comma-separated configurations or sets: all, prompt, delay, steering, full, or names '
                             '(language_only, metadata, subgoals, memory, rtc_d0 … sync_d300 … pause_d300, steer_q5, '
                             'steer_q2)')
    parser.add_argument('--family', action='append', default=[], metavar='FAMILY',
                        help='run every configuration on this task family instead of its own (repeatable): '
                             'ordered_place, restore_layout, middle_place')
    parser.add_argument('--seeds', type=int, default=3, help='held-out seeds per configuration and family')
    parser.add_argument('--first-seed', type=int, default=FIRST_HELD_OUT_SEED, help='first seed (held out: >= 10000)')
    parser.add_argument('--out', default=None, help='output directory (default out/eval/<profile>)')
    parser.add_argument('--namespace', default='', help='namespace of the stack')
    parser.add_argument('--max-episode-s', type=float, default=0.0,
                        help='cut policy episodes after this much simulated time (0: the sim\'s 30 s limit; the '
                             'scripted reference always runs to its end)')
    parser.add_argument('--gif-episodes', type=int, default=0, help='record the scene camera of the first N '
                        'episodes into <out>/episodes.gif')
    parser.add_argument('--param', action='append', default=[], metavar='NODE.NAME=YAML',
                        help='a node parameter for every run, e.g. world_model.period_s=2.0 (repeatable)')
    parser.add_argument('--echo-nodes', action='store_true', help='print the nodes\' output')
    parser.add_argument('--list', action='store_true', help='list the configurations and exit')
    return parser.parse_args(argv)


def write_gif(frames: list[np.ndarray], path: Path, fps: float = 5.0) -> Path | None:
    if not frames:
        return None
    import imageio.v2 as imageio

    path.parent.mkdir(parents=True, exist_ok=True)
    # Upscale the 96 px camera 2× (nearest) so the GIF is watchable.
    imageio.mimsave(path, [np.repeat(np.repeat(f, 2, axis=0), 2, axis=1) for f in frames], duration=1.0 / fps,
                    loop=0)
    return path


def main(argv=None) -> int:
    from pi07_bringup.runner import overrides_from_args

    args = parse_args(argv)
    if args.list:
        for c in all_configs():
            print(f'{c.name:14s} {c.group:9s} nodes={"+".join(n for n in c.nodes if n != "sim")} '
                  f'families={",".join(c.families)}  {c.description}')
        return 0
    if args.first_seed < FIRST_HELD_OUT_SEED:
        print(f'[evaluate] note: seed {args.first_seed} < {FIRST_HELD_OUT_SEED} may overlap training data',
              file=sys.stderr)
    options = EvalOptions(profile=args.profile, checkpoint_dir=args.checkpoint_dir,
                          checkpoints=dict(checkpoints_in(args.checkpoints_in),
                                           **dict(item.split('=', 1) for item in args.checkpoint)),
                          configs=args.configs,
                          seeds=args.seeds, first_seed=args.first_seed,
                          out=args.out or f'out/eval/{Path(args.profile).stem}', namespace=args.namespace,
                          max_episode_s=args.max_episode_s, gif_episodes=args.gif_episodes,
                          node_parameters=overrides_from_args(args.param), echo_nodes=args.echo_nodes,
                          families=tuple(args.family))
    prefix = f'[evaluate {Path(args.profile).stem}]'
    try:
        evaluator = Evaluator(options, log=lambda line: print(f'{prefix} {line}', flush=True))
    except (MissingCheckpoints, ValueError) as exc:
        print(f'{prefix} {exc}', file=sys.stderr)
        return 2
    report = evaluator.run()
    json_path, md_path = write_report(report, Path(options.out))
    gif = write_gif(evaluator.frames, Path(options.out) / 'episodes.gif')
    print(markdown_table(report))
    print(f'{prefix} wrote {json_path}, {md_path}' + (f', {gif}' if gif else ''))
    return 1 if report['aborted'] else 0


if __name__ == '__main__':
    sys.exit(main())
