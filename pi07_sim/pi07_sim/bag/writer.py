"""A rosbag2 (format 9, MCAP) writer for CDR bytes, shared by the recorder and ``collect``.

``close`` is idempotent and writes the MCAP summary and metadata.yaml: a bag closed on SIGINT/SIGTERM is
complete and readable by rosbag2, rosbags and the mcap reader alike.
"""
from __future__ import annotations

import threading
from pathlib import Path

from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import StoragePlugin, Writer

from .types import ensure_type, make_typestore

_NO_TIME = QosTime(0, 0)


def qos(reliable: bool = True, transient_local: bool = False, depth: int = 10) -> Qos:
    """A rosbags Qos as stored in metadata.yaml (offered_qos_profiles), so players can restore it."""
    return Qos(
        history=QosHistory.KEEP_LAST, depth=depth,
        reliability=QosReliability.RELIABLE if reliable else QosReliability.BEST_EFFORT,
        durability=QosDurability.TRANSIENT_LOCAL if transient_local else QosDurability.VOLATILE,
        deadline=_NO_TIME, lifespan=_NO_TIME, liveliness=QosLiveliness.AUTOMATIC,
        liveliness_lease_duration=_NO_TIME, avoid_ros_namespace_conventions=False)


class BagWriter:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.store = make_typestore()
        self._writer = Writer(self.path, version=9, storage_plugin=StoragePlugin.MCAP)
        self._writer.open()
        self._connections = {}
        self.counts: dict[str, int] = {}
        self._lock = threading.Lock()
        self._closed = False

    def add_topic(self, topic: str, msgtype: str, offered_qos: list[Qos] | None = None) -> None:
        """Declare ``topic`` (fully qualified, e.g. '/joint_states') of ``msgtype`` ('pkg/msg/Name')."""
        with self._lock:
            if topic in self._connections:
                return
            ensure_type(self.store, msgtype)
            self._connections[topic] = self._writer.add_connection(
                topic, msgtype, typestore=self.store, offered_qos_profiles=offered_qos or [qos()])
            self.counts[topic] = 0

    def set_custom_data(self, key: str, value: str) -> None:
        """A string stored in metadata.yaml's custom_data (e.g. the episode's outcome)."""
        self._writer.set_custom_data(key, value)

    def has_topic(self, topic: str) -> bool:
        return topic in self._connections

    def write(self, topic: str, timestamp_ns: int, data: bytes) -> None:
        with self._lock:
            if self._closed:
                return
            self._writer.write(self._connections[topic], int(timestamp_ns), data)
            self.counts[topic] += 1

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._writer.close()

    def __enter__(self) -> BagWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
