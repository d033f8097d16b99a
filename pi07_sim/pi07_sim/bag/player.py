"""``play``: publish a bag's recorded CDR bytes on the recorded schedule.

    play bags/run1                        # waits (up to --wait-timeout s) until every topic has a subscriber
    play bags/run1 --rate 2 --topics /joint_states /task --wait-for-subscribers none

Publishers get the QoS stored in the bag (latched topics stay latched). Playback is scheduled on absolute
times from the start (no drift); the timing error is reported at the end.
"""
from __future__ import annotations

import argparse
import signal
import sys
import time

import numpy as np
import rclpy
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rosbags.interfaces import QosDurability, QosReliability
from rosbags.rosbag2 import Reader

from .types import message_class


def publisher_qos(connection) -> QoSProfile:
    offered = list(getattr(connection.ext, 'offered_qos_profiles', []) or [])
    if not offered:
        return QoSProfile(depth=10)
    first = offered[0]
    latched = first.durability == QosDurability.TRANSIENT_LOCAL
    return QoSProfile(
        depth=max(int(first.depth), 1),
        reliability=ReliabilityPolicy.BEST_EFFORT if first.reliability == QosReliability.BEST_EFFORT
        else ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE)


def play(bag: str, rate: float = 1.0, topics: list[str] | None = None, wait_for: str = 'all',
         wait_timeout: float = 10.0, stop=lambda: False) -> dict:
    node = Node('player')
    try:
        with Reader(bag) as reader:
            connections = [c for c in reader.connections
                           if c.msgcount > 0 and (not topics or c.topic in topics)]  # nothing to wait for otherwise
            publishers = {}
            for connection in connections:
                if connection.topic not in publishers:
                    publishers[connection.topic] = node.create_publisher(
                        message_class(connection.msgtype), connection.topic, publisher_qos(connection))
            deadline = time.monotonic() + wait_timeout
            while wait_for != 'none' and time.monotonic() < deadline and not stop():
                matched = [p.get_subscription_count() > 0 for p in publishers.values()]
                if (all(matched) if wait_for == 'all' else any(matched)):
                    break
                time.sleep(0.05)
            else:
                if wait_for != 'none':
                    print(f'[play] not every topic has a subscriber after {wait_timeout} s: playing anyway',
                          flush=True)
            print(f'[play] playing {bag}: {len(publishers)} topics', flush=True)
            counts = dict.fromkeys(publishers, 0)
            errors = []
            first_stamp = None
            start = time.monotonic()
            for connection, stamp, data in reader.messages(connections=connections):
                if stop():
                    break
                first_stamp = stamp if first_stamp is None else first_stamp
                due = start + (stamp - first_stamp) * 1e-9 / rate
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                publishers[connection.topic].publish(bytes(data))
                errors.append(time.monotonic() - due)
                counts[connection.topic] += 1
        time.sleep(0.5)  # let reliable deliveries finish before the publishers go
        err_ms = np.array(errors) * 1e3 if errors else np.zeros(1)
        return {'counts': counts, 'messages': int(sum(counts.values())),
                'timing_error_ms_p50': float(np.percentile(err_ms, 50)),
                'timing_error_ms_p99': float(np.percentile(err_ms, 99))}
    finally:
        node.destroy_node()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ros_args = argv[argv.index('--ros-args'):] if '--ros-args' in argv else []
    own_args = argv[:len(argv) - len(ros_args)]
    parser = argparse.ArgumentParser(prog='play', description=__doc__.split('\n\n')[0])
    parser.add_argument('bag', help='bag directory')
    parser.add_argument('--rate', type=float, default=1.0, help='playback speed factor')
    parser.add_argument('--topics', nargs='*', help='only these topics (fully qualified names)')
    parser.add_argument('--wait-for-subscribers', choices=('all', 'any', 'none'), default='all',
                        help='wait until all / any topic has a subscriber before playing (default: all)')
    parser.add_argument('--wait-timeout', type=float, default=10.0, help='seconds to wait for subscribers')
    args = parser.parse_args(own_args)
    rclpy.init(args=['play', *ros_args])
    stopped = []
    signal.signal(signal.SIGTERM, lambda *_: stopped.append(True))
    try:
        summary = play(args.bag, args.rate, args.topics, args.wait_for_subscribers, args.wait_timeout,
                       stop=lambda: bool(stopped))
        print(f'[play] done: {summary["messages"]} messages, timing error p50 {summary["timing_error_ms_p50"]:.2f} '
              f'ms, p99 {summary["timing_error_ms_p99"]:.2f} ms', flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        rclpy.try_shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main())
