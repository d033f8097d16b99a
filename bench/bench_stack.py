"""Benchmark of the running stack: camera-to-command latency and executor tick jitter with inference running.

The sim + action_expert + chunk_executor run as real processes (the embedded runner, loopback DDS) from a profile;
a probe node watches the scene camera, the chunks and the commands.

- camera-to-command latency: for each chunk that the executor used, from the stamp of the newest camera image
  at the chunk's observation to the first command sent after the chunk arrived (and before the next one did),
  split into image age at the observation, inference (observation → chunk) and chunk → command;
- executor tick jitter: |interval between commands − control period| (p50/p99), measured where the commands
  arrive, first with inference off (the probe feeds the executor a constant chunk: the baseline) and then with the
  action expert running back to back on the same cores; printed with the ratio inference / baseline.

    source scripts/env.sh && python bench/bench_stack.py [--profile sim_arm7] [--seconds 15]

Checkpoints: the shipped ones (pi07_bringup/checkpoints/<profile>/) when present, else small random ones made here
(inference cost is what matters, not skill). Writes out/bench/stack.json.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def pct(values, q):
    return float(np.percentile(values, q)) if len(values) else float('nan')


def stats_ms(values) -> dict:
    values = np.asarray(values) * 1e3
    return {'n': int(len(values)), 'p50_ms': pct(values, 50), 'p99_ms': pct(values, 99),
            'mean_ms': float(values.mean()) if len(values) else float('nan')}


def tick_jitter(arrivals: list[float], period: float) -> dict:
    intervals = np.diff(np.asarray(arrivals))
    out = stats_ms(np.abs(intervals - period))
    out['interval_p50_ms'] = pct(intervals * 1e3, 50)
    out['interval_p99_ms'] = pct(intervals * 1e3, 99)
    out['rate_hz'] = float(1.0 / intervals.mean()) if len(intervals) else float('nan')
    return out


def camera_to_command(images: list[float], chunks: list[tuple[float, float, float]], commands: list[float]) -> dict:
    """images: stamps of the camera frames; chunks: (arrival, observation stamp, chunk stamp); commands: arrival
    times of the executor's commands. All on the wall clock (the sim stamps in real time)."""
    images = np.sort(np.asarray(images))
    commands = np.asarray(commands)
    totals, ages, inference, dispatch = [], [], [], []
    for i, (arrival, observed, start) in enumerate(chunks):
        next_arrival = chunks[i + 1][0] if i + 1 < len(chunks) else float('inf')
        k = np.searchsorted(images, observed, side='right') - 1
        after = commands[commands >= max(arrival, start)]
        if k < 0 or not len(after) or after[0] >= next_arrival:
            continue  # the executor never ran this chunk: a newer one arrived first
        command = after[0]
        totals.append(command - images[k])
        ages.append(observed - images[k])
        inference.append(arrival - observed)
        dispatch.append(command - arrival)
    return {'camera_to_command': stats_ms(totals), 'image_age_at_observation': stats_ms(ages),
            'observation_to_chunk': stats_ms(inference), 'chunk_to_command': stats_ms(dispatch),
            'chunks_seen': len(chunks), 'chunks_commanded': len(totals)}


class StackProbe:
    def __init__(self, profile):
        import rclpy
        from pi07_common.node_utils import stamp_to_sec
        from pi07_common.qos import SENSOR, STREAM
        from rclpy.executors import SingleThreadedExecutor
        from sensor_msgs.msg import Image, JointState
        from std_msgs.msg import Float64MultiArray
        from trajectory_msgs.msg import JointTrajectory

        from pi07_msgs.msg import ActionChunk, EndEffectorTarget

        if not rclpy.ok():
            rclpy.init(args=[])
        self.node = rclpy.create_node('bench_stack')
        self.lock = threading.Lock()
        self.images: list[float] = []
        self.chunks: list[tuple[float, float, float]] = []
        self.commands: list[float] = []
        self.position = None
        names = list(profile.action_state_names)
        command_type = {'forward_position': Float64MultiArray, 'joint_trajectory': JointTrajectory,
                        'ee_target': EndEffectorTarget}[profile.controller_interface]
        topic = profile.controller_topic or {'forward_position': 'forward_position_controller/commands',
                                             'joint_trajectory': 'joint_trajectory_controller/joint_trajectory',
                                             'ee_target': 'ee_target'}[profile.controller_interface]

        def on_image(msg):
            with self.lock:
                self.images.append(stamp_to_sec(msg.header.stamp))

        def on_chunk(msg):
            if msg.task_id == 'bench':
                return  # our own baseline chunks
            with self.lock:
                self.chunks.append((time.time(), stamp_to_sec(msg.observation_stamp), stamp_to_sec(msg.header.stamp)))

        def on_command(_msg):
            with self.lock:
                self.commands.append(time.time())

        def on_state(msg):
            index = {n: i for i, n in enumerate(msg.name)}
            if all(n in index for n in names):
                self.position = np.array([msg.position[index[n]] for n in names])

        n = self.node
        n.create_subscription(Image, f'camera/{profile.camera_names[0]}/image_raw', on_image, SENSOR)
        n.create_subscription(ActionChunk, 'action_chunk', on_chunk, STREAM)
        n.create_subscription(command_type, topic, on_command, STREAM)
        n.create_subscription(JointState, 'joint_states', on_state, SENSOR)
        self.chunk_pub = n.create_publisher(ActionChunk, 'action_chunk', STREAM)
        self.names = list(profile.action_names)
        self.dt = 1.0 / profile.control_rate_hz
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(n)
        threading.Thread(target=self.executor.spin, daemon=True).start()

    def clear(self):
        with self.lock:
            self.images, self.chunks, self.commands = [], [], []

    def snapshot(self):
        with self.lock:
            return list(self.images), list(self.chunks), list(self.commands)

    def publish_hold_chunk(self, sequence: int, horizon: int = 50) -> None:
        """A chunk that holds the measured position for horizon * dt seconds (the baseline's load: none)."""
        from pi07_common.node_utils import sec_to_stamp

        from pi07_msgs.msg import ActionChunk

        actions = np.tile(self.position, (horizon, 1)).astype(np.float32)
        msg = ActionChunk(sequence=sequence, names=self.names, control_mode='', horizon=horizon,
                          action_dim=len(self.names), dt=self.dt, actions=actions.ravel().tolist(), task_id='bench',
                          mode='sync')
        msg.header.stamp = sec_to_stamp(time.time())
        msg.observation_stamp = msg.header.stamp
        self.chunk_pub.publish(msg)

    def stop(self):
        self.executor.shutdown(timeout_sec=2.0)
        self.node.destroy_node()


def checkpoints_for(profile_name: str, given: str | None, tmp: Path) -> tuple[dict, str]:
    from pi07_bringup.evaluate import MissingCheckpoints, check_checkpoints, checkpoints_in, source_tree_checkpoints

    for candidate, note in ((checkpoints_in(given), f'given: {given}'),
                            (source_tree_checkpoints(profile_name), 'shipped')):
        if candidate:
            try:
                check_checkpoints(candidate, ['action_expert'])
                return candidate, note
            except MissingCheckpoints:
                if note.startswith('given'):
                    raise
    sys.path.insert(0, str(ROOT / 'test'))
    import torch
    from stack_checkpoints import make_checkpoints

    from pi07_bringup.profile import load_profile

    torch.set_num_threads(1)
    return make_checkpoints(load_profile(profile_name), tmp), 'random micro checkpoints (no shipped ones found)'


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description='camera-to-command latency and executor jitter of the stack')
    parser.add_argument('--profile', default='sim_arm7')
    parser.add_argument('--checkpoints-in', default=None, help='DIR with vla/ (default: shipped, else random)')
    parser.add_argument('--seconds', type=float, default=15.0, help='measurement time per phase')
    parser.add_argument('--out', default=str(ROOT / 'out' / 'bench' / 'stack.json'))
    args = parser.parse_args(argv)

    from pi07_bringup.dds_env import check_safe
    from pi07_bringup.graph import build_graph
    from pi07_bringup.profile import load_profile
    from pi07_bringup.runner import EmbeddedRunner

    check_safe(os.environ)
    profile = load_profile(args.profile)
    tmp = Path(tempfile.mkdtemp(prefix='bench_stack_'))
    checkpoints, note = checkpoints_for(args.profile, args.checkpoints_in, tmp / 'checkpoints')
    print(f'[bench_stack] {profile.name}: checkpoints {note}')
    specs = build_graph(profile, nodes=['sim', 'action_expert', 'chunk_executor'], checkpoints=checkpoints)
    runner = EmbeddedRunner(specs, log_dir=str(tmp / 'logs'), echo=False)
    probe = StackProbe(profile)
    period = 1.0 / profile.control_rate_hz
    result = {'profile': profile.name, 'checkpoints': note, 'seconds_per_phase': args.seconds,
              'control_rate_hz': profile.control_rate_hz, 'load_average_before': list(os.getloadavg())}
    try:
        t0 = time.monotonic()
        runner.start()
        runner.bring_up(timeout=240)
        print(f'[bench_stack] stack up in {time.monotonic() - t0:.0f} s; baseline: inference off, the executor '
              f'streams a constant chunk')
        # Baseline: no inference; the executor streams a constant chunk the probe refreshes every second.
        runner.transition('action_expert', 'deactivate')
        runner.transition('chunk_executor', 'deactivate')
        runner.transition('chunk_executor', 'activate')
        while probe.position is None:
            time.sleep(0.05)
        time.sleep(0.5)
        probe.clear()
        end, sequence = time.monotonic() + args.seconds, 0
        while time.monotonic() < end:
            probe.publish_hold_chunk(sequence)
            sequence += 1
            time.sleep(1.0)
        _, _, baseline_commands = probe.snapshot()
        result['baseline'] = {'executor_jitter': tick_jitter(baseline_commands, period)}
        # With inference: the action expert runs back to back on the same cores.
        runner.transition('chunk_executor', 'deactivate')
        runner.transition('action_expert', 'activate')
        runner.transition('chunk_executor', 'activate')
        print('[bench_stack] inference on')
        time.sleep(2.0)  # first chunks, RTC latency estimate settles
        probe.clear()
        time.sleep(args.seconds)
        images, chunks, commands = probe.snapshot()
        result['inference'] = dict(camera_to_command(images, chunks, commands),
                                   executor_jitter=tick_jitter(commands, period),
                                   chunk_rate_hz=len(chunks) / args.seconds)
    finally:
        probe.stop()
        runner.shutdown()
    result['load_average_after'] = list(os.getloadavg())
    base, run = result['baseline']['executor_jitter'], result['inference']['executor_jitter']
    result['ratios'] = {'jitter_p50_inference_over_baseline': run['p50_ms'] / max(base['p50_ms'], 1e-3),
                        'jitter_p99_inference_over_baseline': run['p99_ms'] / max(base['p99_ms'], 1e-3),
                        'camera_to_command_p50_over_inference_p50':
                            result['inference']['camera_to_command']['p50_ms']
                            / max(result['inference']['observation_to_chunk']['p50_ms'], 1e-3)}
    inf = result['inference']
    print(f'\n[bench_stack] {profile.name}, control period {period * 1e3:.0f} ms, {args.seconds:.0f} s per phase, '
          f'load {result["load_average_before"][0]:.1f}')
    print('| measure | p50 (ms) | p99 (ms) | n |\n|---|---|---|---|')
    rows = [('camera → command', inf['camera_to_command']), ('  image age at observation',
            inf['image_age_at_observation']), ('  observation → chunk (inference)', inf['observation_to_chunk']),
            ('  chunk → command', inf['chunk_to_command']), ('executor jitter, inference off (baseline)', base),
            ('executor jitter, inference on', run)]
    for name, s in rows:
        print(f'| {name} | {s["p50_ms"]:.1f} | {s["p99_ms"]:.1f} | {s["n"]} |')
    r = result['ratios']
    print(f'\njitter inference / baseline: p50 {r["jitter_p50_inference_over_baseline"]:.2f}x, p99 '
          f'{r["jitter_p99_inference_over_baseline"]:.2f}x; command rate {base["rate_hz"]:.2f} → '
          f'{run["rate_hz"]:.2f} Hz; chunks {inf["chunk_rate_hz"]:.1f}/s, {inf["chunks_commanded"]} of '
          f'{inf["chunks_seen"]} reached a command; camera→command / inference p50 '
          f'{r["camera_to_command_p50_over_inference_p50"]:.2f}x')
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + '\n')
    print(f'[bench_stack] wrote {out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
