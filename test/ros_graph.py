"""Helpers for tests that run pi07 nodes as real processes: a probe node spun in a background thread."""
from __future__ import annotations

import threading
import time
from collections import defaultdict

import rclpy
from rclpy.executors import SingleThreadedExecutor


class Probe:
    """A test-side node that publishes and records, spun in its own thread; ``stop()`` at the end."""

    def __init__(self, name: str = 'probe'):
        if not rclpy.ok():
            rclpy.init(args=[])
        self.node = rclpy.create_node(name)
        # key -> [(monotonic time, ROS time, message)]
        self.received: dict[str, list[tuple[float, float, object]]] = defaultdict(list)
        self.subscriptions: dict[str, object] = {}
        self._lock = threading.Lock()
        self._executor = SingleThreadedExecutor()
        self._executor.add_node(self.node)
        self._extra_nodes: list = []
        self._thread = threading.Thread(target=self._executor.spin, daemon=True)
        self._thread.start()

    def action_client(self, action_type, name: str):
        """An action client spun with the probe. rclpy's ActionClient registers itself with its node before its
        constructor has finished (its lock comes later), so one made on the node this thread is spinning can crash
        the spin thread ('no attribute _lock'; ros2/rclpy#1589, still in the Kilted wheels here); it is made on a node
        of its own, added once it is whole."""
        from rclpy.action import ActionClient
        node = rclpy.create_node(f'{self.node.get_name()}_action_client_{len(self._extra_nodes)}')
        client = ActionClient(node, action_type, name)
        self._extra_nodes.append(node)
        self._executor.add_node(node)
        return client

    def record(self, msg_type, topic: str, qos=10, key: str | None = None) -> str:
        key = key or topic

        def on_msg(msg):
            ros_now = self.node.get_clock().now().nanoseconds * 1e-9
            with self._lock:
                self.received[key].append((time.monotonic(), ros_now, msg))
        self.subscriptions[key] = self.node.create_subscription(msg_type, topic, on_msg, qos)
        return key

    def publisher_count(self, key: str) -> int:
        """Publishers matched with the recording of ``key`` (discovery done both ways, so nothing is missed)."""
        return self.subscriptions[key].get_publisher_count()

    def messages(self, key: str, since: float = 0.0) -> list:
        with self._lock:
            return [m for t, _, m in self.received[key] if t >= since]

    def times(self, key: str, since: float = 0.0) -> list[float]:
        """Monotonic arrival times (for rates and ordering)."""
        with self._lock:
            return [t for t, _, _ in self.received[key] if t >= since]

    def ros_times(self, key: str, since: float = 0.0) -> list[float]:
        """Arrival times on the ROS clock (to compare with message stamps)."""
        with self._lock:
            return [r for t, r, _ in self.received[key] if t >= since]

    def wait_for(self, predicate, timeout: float = 30.0, interval: float = 0.05) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(interval)
        return bool(predicate())

    def now(self) -> float:
        return self.node.get_clock().now().nanoseconds * 1e-9

    def stop(self) -> None:
        self._executor.shutdown(timeout_sec=2.0)
        for node in self._extra_nodes:
            node.destroy_node()
        self.node.destroy_node()


def diagnostics_of(probe: Probe, key: str, node_name: str, since: float = 0.0):
    """The latest DiagnosticStatus entries whose name starts with ``node_name``."""
    statuses = []
    for array in probe.messages(key, since):
        statuses += [s for s in array.status if s.name.startswith(node_name)]
    return statuses
