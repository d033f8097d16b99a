"""Diagnostics on /diagnostics: diagnostic_updater where it is installed, an equivalent small publisher elsewhere.

Usage::

    diag = Diagnostics(node, hardware_id='sim_arm7')
    diag.add('inference', lambda: (OK, 'running', {'latency_ms': 80.0}))
    diag.force_update()    # publish now (e.g. on a fault) instead of waiting for the period
"""
from __future__ import annotations

from collections.abc import Callable

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

# Levels as ints (DiagnosticStatus stores them as one byte).
OK = 0
WARN = 1
ERROR = 2
STALE = 3
LEVEL_NAMES = {OK: 'OK', WARN: 'WARN', ERROR: 'ERROR', STALE: 'STALE'}

StatusFn = Callable[[], tuple[int, str, dict]]

try:  # a full ROS 2 install
    import diagnostic_updater as _updater_module
except ImportError:  # PyPI wheels: no diagnostic_updater
    _updater_module = None


class Diagnostics:
    """Periodic diagnostic statuses of one node; each status is a function returning (level, message, values)."""

    def __init__(self, node, hardware_id: str, period_s: float = 1.0, use_updater: bool | None = None):
        self._node = node
        self._hardware_id = hardware_id
        self._tasks: list[tuple[str, StatusFn]] = []
        use_updater = _updater_module is not None if use_updater is None else use_updater
        self._updater = None
        if use_updater:
            self._updater = _updater_module.Updater(node, period=period_s)
            self._updater.setHardwareID(hardware_id)
        else:
            self._publisher = node.create_publisher(DiagnosticArray, '/diagnostics', 10)
            self._timer = node.create_timer(period_s, self.force_update)

    def add(self, name: str, fn: StatusFn) -> None:
        full_name = f'{self._node.get_name()}: {name}'
        if self._updater is not None:
            def run(stat, fn=fn):
                level, message, values = fn()
                stat.summary(bytes([level]), message)
                for key, value in values.items():
                    stat.add(key, str(value))
                return stat
            self._updater.add(full_name, run)
        else:
            self._tasks.append((full_name, fn))

    def statuses(self) -> list[DiagnosticStatus]:
        out = []
        for name, fn in self._tasks:
            try:
                level, message, values = fn()
            except Exception as exc:  # a broken status function must not take the node down
                level, message, values = ERROR, f'status failed: {exc}', {}
            out.append(DiagnosticStatus(level=bytes([level]), name=name, message=message,
                                        hardware_id=self._hardware_id,
                                        values=[KeyValue(key=k, value=str(v)) for k, v in values.items()]))
        return out

    def force_update(self) -> None:
        if self._updater is not None:
            self._updater.force_update()
            return
        array = DiagnosticArray()
        array.header.stamp = self._node.get_clock().now().to_msg()
        array.status = self.statuses()
        self._publisher.publish(array)

    def destroy(self) -> None:
        if self._updater is not None:
            # diagnostic_updater has no destroy: its timer dies with the node; stop it publishing meanwhile.
            self._tasks.clear()
            return
        self._node.destroy_timer(self._timer)
        self._node.destroy_publisher(self._publisher)
