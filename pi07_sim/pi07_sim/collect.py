"""``collect``: expert demonstrations into one rosbag2 MCAP bag per episode.

    collect -o data/demos --episodes 5                                   # every embodiment, family, variant
    collect -o data/demos --episodes 20 --embodiments gantry --families ordered_place --variants expert slow

The simulator and the expert run in this process (no DDS) and the bag is written directly, with the same
topics, types and serialised bytes a live recording of ``sim`` + ``expert`` would hold: both cameras (10 Hz),
joint_states and sim/object_poses (50 Hz), the command topic (10 Hz; forward_position_controller/commands for
arm7, ee_target for the gantry), task (with the variant's EpisodeMetadata), episode_metadata, subtask (latched,
on change) and task_status (2 Hz and on progress). Message stamps and bag times are simulated
time from a fixed epoch per episode. Each bag's metadata.yaml carries the outcome under custom_data
``pi07.episode`` (JSON); ``summary.json`` in the output directory lists every episode.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

from rclpy.serialization import serialize_message

from pi07_msgs.msg import TaskStatus

from . import ros_messages as rm
from .bag.writer import BagWriter, qos
from .env import EMBODIMENTS, TabletopEnv
from .expert import VARIANTS, make_expert
from .tasks import FAMILIES

JOINT_STATE_PERIOD_S = 0.02
STATUS_PERIOD_S = 0.5
SETTLE_AFTER_SUCCESS_S = 0.5  # keep recording briefly after success: the final frames show the result
EPOCH_S = 1_700_000_000.0  # stamps = epoch + episode index * 1000 s + simulated time


def command_topic(embodiment: str, interface: str = 'auto') -> str:
    interface = interface if interface != 'auto' else ('forward' if embodiment == 'arm7' else 'ee')
    return {'forward': 'forward_position_controller/commands', 'ee': 'ee_target'}[interface]


class EpisodeRecorder:
    """Writes one episode's messages, serialised by rclpy exactly as they would travel over DDS."""

    def __init__(self, writer: BagWriter, base_s: float):
        self.writer = writer
        self.base_s = base_s

    def add(self, topic: str, latched: bool = False) -> None:
        self.writer.add_topic('/' + topic, rm.TOPIC_TYPES[topic], [qos(True, latched, 1 if latched else 10)])

    def write(self, topic: str, msg, sim_time: float) -> None:
        self.writer.write('/' + topic, int(round((self.base_s + sim_time) * 1e9)), serialize_message(msg))


def record_episode(env: TabletopEnv, out_dir: Path, variant: str, seed: int, index: int,
                   interface: str = 'auto', prelude: Callable[[TabletopEnv], None] | None = None,
                   label: str | None = None) -> dict:
    """Run one expert episode on ``env`` and write it as a bag under ``out_dir``; returns its outcome.

    With ``prelude(env)`` (which resets ``env`` with ``seed`` and drives it, e.g. a learned policy for a few
    seconds), the expert takes over from the state the prelude left and only its part is recorded; ``label``
    then names the bag and the outcome's variant (e.g. 'takeover')."""
    if prelude is None:
        env.reset(seed=seed)
    else:
        prelude(env)
    expert = make_expert(env, variant, seed)
    if prelude is not None:
        expert.take_over()
    meta = expert.metadata
    tid = rm.task_id(env.embodiment, env.task.family, seed, index)
    label = label or variant
    name = f'{env.embodiment}_{env.task.family}_{label}_s{seed:04d}'
    base_s = EPOCH_S + index * 1000.0
    cmd_topic = command_topic(env.embodiment, interface)
    started = time.perf_counter()
    with BagWriter(out_dir / name) as writer:
        rec = EpisodeRecorder(writer, base_s)
        for topic in ('camera/scene/image_raw', 'camera/wrist/image_raw', 'joint_states', 'sim/object_poses',
                      'task_status', cmd_topic):
            rec.add(topic)
        rec.add('subtask', latched=True)
        rec.add('task', latched=True)
        rec.add('episode_metadata', latched=True)
        metadata = rm.metadata_msg(env.embodiment, env.action_spec.control_mode, meta['speed'], meta['quality'],
                                   meta['mistake'])
        rec.write('task', rm.task_msg(env.task, tid, base_s, metadata, 'plan'), 0.0)
        rec.write('episode_metadata', metadata, 0.0)
        subtask_text, subtask_index = None, -1
        status_time, last_progress, success_time = -1e9, -1, None
        substeps = max(1, int(round(env.control_period / JOINT_STATE_PERIOD_S)))
        while True:
            t = env.time
            obs = env.observe()
            for camera, pixels in obs['images'].items():
                rec.write(f'camera/{camera}/image_raw', rm.image_msg(pixels, base_s + t, camera), t)
            action, text = expert.act(obs)
            if cmd_topic == 'ee_target':
                ee = action if env.embodiment == 'gantry' else [*expert.setpoint, expert.setpoint_yaw, expert.gripper]
                rec.write(cmd_topic, rm.ee_target_msg(ee, base_s + t), t)
            else:
                rec.write(cmd_topic, rm.forward_command_msg(action), t)
            if text and text != subtask_text:
                subtask_index += 1
                subtask_text = text
                rec.write('subtask', rm.subtask_msg(tid, text, subtask_index, base_s + t), t)
            env.set_target(expert.executed_action(action))   # the recorded command stays the expert's (dart)
            for _ in range(substeps):
                env.advance(env.control_period / substeps)
                ts = env.time
                rec.write('joint_states', rm.joint_state_msg(env.joint_names, env.state(), env.joint_velocities(),
                                                             base_s + ts), ts)
                rec.write('sim/object_poses', rm.object_poses_msg(env.object_poses(), base_s + ts), ts)
            done, total = env.progress()
            success = env.success()
            if success and success_time is None:
                success_time = env.time
            finished = (success_time is not None and env.time - success_time >= SETTLE_AFTER_SUCCESS_S) \
                or env.timed_out()
            state = TaskStatus.STATE_SUCCEEDED if success else (
                TaskStatus.STATE_FAILED if finished else TaskStatus.STATE_RUNNING)
            if done != last_progress or env.time - status_time >= STATUS_PERIOD_S - 1e-9 or finished:
                last_progress, status_time = done, env.time
                current = env.task.plan[done] if done < total else ''
                rec.write('task_status', rm.task_status_msg(tid, env.task.instruction, state, done, total, current,
                                                            env.time, base_s + env.time), env.time)
            if finished:
                break
        rec.write('subtask', rm.subtask_msg(tid, '', subtask_index + 1, base_s + env.time, done=True), env.time)
        outcome = {'bag': name, 'embodiment': env.embodiment, 'family': env.task.family, 'variant': label,
                   'seed': seed, 'task_id': tid, 'instruction': env.task.instruction, 'success': bool(success),
                   'subtasks_done': done, 'subtasks_total': total, 'duration_s': round(env.time, 3),
                   'speed': meta['speed'], 'quality': meta['quality'], 'mistake': meta['mistake'],
                   'wall_s': round(time.perf_counter() - started, 3)}
        writer.set_custom_data('pi07.episode', json.dumps(outcome))
    outcome['messages'] = sum(writer.counts.values())
    return outcome


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='collect', description=__doc__.split('\n\n')[0])
    parser.add_argument('-o', '--output', required=True, help='directory for the bags (created)')
    parser.add_argument('--episodes', type=int, default=5, help='episodes per embodiment, family and variant')
    parser.add_argument('--embodiments', nargs='+', default=list(EMBODIMENTS), choices=EMBODIMENTS)
    parser.add_argument('--families', nargs='+', default=list(FAMILIES), choices=FAMILIES)
    parser.add_argument('--variants', nargs='+', default=['expert', 'slow', 'noisy', 'mistake'],
                        choices=list(VARIANTS))
    parser.add_argument('--seed', type=int, default=0, help='seed of the first episode (then +1)')
    parser.add_argument('--image-size', type=int, default=96)
    parser.add_argument('--command-interface', choices=('auto', 'forward', 'ee'), default='auto',
                        help="auto: forward_position_controller for arm7, ee_target for the gantry")
    args = parser.parse_args(argv)
    from tqdm import tqdm

    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(e, f, v, args.seed + i) for e in args.embodiments for f in args.families for v in args.variants
            for i in range(args.episodes)]
    results, envs = [], {}
    bar = tqdm(jobs, desc='collect', unit='episode')
    for index, (embodiment, family, variant, seed) in enumerate(bar):
        key = (embodiment, family)
        if key not in envs:
            envs[key] = TabletopEnv(embodiment, family, image_size=args.image_size)
        name = f'{embodiment}_{family}_{variant}_s{seed:04d}'
        if (out / name).exists():
            bar.write(f'skipping {name}: exists')
            continue
        result = record_episode(envs[key], out, variant, seed, index, args.command_interface)
        results.append(result)
        bar.set_postfix(success=f'{sum(r["success"] for r in results)}/{len(results)}')
    for env in envs.values():
        env.close()
    summary_path = out / 'summary.json'
    previous = json.loads(summary_path.read_text()) if summary_path.exists() else []
    summary_path.write_text(json.dumps(previous + results, indent=1))
    print(f'\n{"embodiment":10} {"family":15} {"variant":8} {"episodes":>8} {"success":>8} {"mean s":>7}')
    groups: dict[tuple, list] = {}
    for r in results:
        groups.setdefault((r['embodiment'], r['family'], r['variant']), []).append(r)
    for (embodiment, family, variant), rs in groups.items():
        print(f'{embodiment:10} {family:15} {variant:8} {len(rs):8d} {sum(r["success"] for r in rs):8d} '
              f'{sum(r["duration_s"] for r in rs) / len(rs):7.1f}')
    total_ok = sum(r['success'] for r in results)
    print(f'{len(results)} episodes, {total_ok} succeeded; bags and summary.json in {out}')
    return 0 if total_ok == len(results) or not results else 1


if __name__ == '__main__':
    sys.exit(main())
