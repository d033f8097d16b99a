"""``record``: subscribe to topics with ``raw=True`` and write the CDR bytes into a rosbag2 MCAP bag.

    record -o bags/run1                      # every topic there is (and every one that appears later)
    record -o bags/run1 camera/scene/image_raw joint_states task   # these (relative to --ros-args -r __ns:=)
    record -o bags/run1 --duration 30

Topics are discovered every half second; each is subscribed with a QoS compatible with its publishers
(transient-local when all of them are, so latched topics such as ``task`` are recorded too) and their offered
QoS is stored in the bag for the player. Messages are stamped with their receive time on the node's clock
(wall time, or /clock with use_sim_time). SIGINT or SIGTERM closes the bag properly: it is complete and readable.
"""
from __future__ import annotations

import argparse
import signal
import sys
import threading
import time

import rclpy
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions

from .types import message_class
from .writer import BagWriter, qos

IGNORED = ('/rosout', '/parameter_events')


class Recorder(Node):
    def __init__(self, writer: BagWriter, topics: list[str] | None, discovery_period_s: float = 0.5):
        super().__init__('recorder')
        self.writer = writer
        self.wanted = None if not topics else {self._qualify(t) for t in topics}
        self._recorded = {}
        self._discover()
        self.create_timer(discovery_period_s, self._discover)

    def _qualify(self, topic: str) -> str:
        if topic.startswith('/'):
            return topic
        namespace = self.get_namespace().rstrip('/')
        return f'{namespace}/{topic}'

    def _discover(self) -> None:
        for topic, types in self.get_topic_names_and_types():
            if topic in self._recorded or topic in IGNORED or (self.wanted and topic not in self.wanted):
                continue
            publishers = self.get_publishers_info_by_topic(topic)
            if not publishers:
                continue
            self._subscribe(topic, types[0], publishers)

    def _subscribe(self, topic: str, msgtype: str, publishers) -> None:
        profiles = [p.qos_profile for p in publishers]
        latched = all(p.durability == DurabilityPolicy.TRANSIENT_LOCAL for p in profiles)
        reliable = all(p.reliability == ReliabilityPolicy.RELIABLE for p in profiles)
        try:
            cls = message_class(msgtype)
            self.writer.add_topic(topic, msgtype, [qos(reliable, latched, max(p.depth, 1)) for p in profiles[:1]])
        except (ImportError, AttributeError, KeyError) as error:
            self.get_logger().warning(f'not recording {topic} ({msgtype}): {error}')
            self._recorded[topic] = None
            return
        profile = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE if reliable
                             else ReliabilityPolicy.BEST_EFFORT,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE)

        def on_message(data: bytes, topic=topic) -> None:
            self.writer.write(topic, self.get_clock().now().nanoseconds, data)

        self._recorded[topic] = self.create_subscription(cls, topic, on_message, profile, raw=True)
        print(f'[record] recording {topic} ({msgtype})', flush=True)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ros_args = argv[argv.index('--ros-args'):] if '--ros-args' in argv else []
    own_args = argv[:len(argv) - len(ros_args)]
    parser = argparse.ArgumentParser(prog='record', description=__doc__.split('\n\n')[0])
    parser.add_argument('topics', nargs='*', help='topics to record (default: all)')
    parser.add_argument('-o', '--output', required=True, help='bag directory to create (must not exist)')
    parser.add_argument('--duration', type=float, default=0.0, help='stop after this many seconds (0 = until SIGINT)')
    args = parser.parse_args(own_args)

    rclpy.init(args=['record', *ros_args], signal_handler_options=SignalHandlerOptions.NO)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    writer = BagWriter(args.output)
    node = Recorder(writer, args.topics)
    print(f'[record] writing {args.output}', flush=True)
    deadline = time.monotonic() + args.duration if args.duration > 0 else None
    try:
        while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
            rclpy.spin_once(node, timeout_sec=0.1)
    finally:
        writer.close()
        total = sum(writer.counts.values())
        print(f'[record] closed {args.output}: {total} messages', flush=True)
        for topic, count in sorted(writer.counts.items()):
            print(f'[record]   {topic}: {count}', flush=True)
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main())
