"""Message types for bags: rosbags' Kilted typestore plus interface packages found on the ROS install.

Custom types (pi07_msgs and anything else that is not a core ROS type) are registered from their ``.msg`` files
in ``share/<package>/msg`` of the packages on AMENT_PREFIX_PATH, dependencies first, so the bag carries their
full definitions and the same RIHS01 hashes rosidl generates.
"""
from __future__ import annotations

import importlib
import os
import re
from pathlib import Path

from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

_FIELD_TYPE = re.compile(r'^\s*([A-Za-z_][\w/]*)(?:\[[^\]]*\])?\s+\w+', re.MULTILINE)
_PRIMITIVES = {'bool', 'byte', 'char', 'float32', 'float64', 'int8', 'uint8', 'int16', 'uint16', 'int32', 'uint32',
               'int64', 'uint64', 'string', 'wstring'}


def message_class(msgtype: str):
    """'pkg/msg/Name' -> the rclpy message class."""
    package, kind, name = msgtype.split('/')
    return getattr(importlib.import_module(f'{package}.{kind}'), name)


def msgtype_of(cls) -> str:
    """Message class -> 'pkg/msg/Name'."""
    module = cls.__module__.split('.')
    return f'{module[0]}/{module[1].lstrip("_")}/{cls.__name__}'


def find_msg_file(msgtype: str) -> Path | None:
    package, kind, name = msgtype.split('/')
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
        try:
            candidate = Path(get_package_share_directory(package)) / kind / f'{name}.msg'
            if candidate.is_file():
                return candidate
        except PackageNotFoundError:
            pass
    except ImportError:  # no ament_index: walk the prefixes ourselves
        pass
    for prefix in os.environ.get('AMENT_PREFIX_PATH', '').split(os.pathsep):
        candidate = Path(prefix) / 'share' / package / kind / f'{name}.msg'
        if prefix and candidate.is_file():
            return candidate
    return None


def _dependencies(text: str, package: str) -> list[str]:
    deps = []
    for match in _FIELD_TYPE.finditer(text):
        field_type = match.group(1)
        if field_type in _PRIMITIVES or field_type.isupper():
            continue
        if '/' not in field_type:
            field_type = 'std_msgs/msg/Header' if field_type == 'Header' else f'{package}/msg/{field_type}'
        elif field_type.count('/') == 1:
            pkg, name = field_type.split('/')
            field_type = f'{pkg}/msg/{name}'
        deps.append(field_type)
    return deps


def ensure_type(store: Typestore, msgtype: str) -> None:
    """Register ``msgtype`` (and the types it uses) from .msg files unless the store knows it already."""
    if msgtype in store.fielddefs:
        return
    path = find_msg_file(msgtype)
    if path is None:
        raise KeyError(f'message type {msgtype} is unknown to rosbags and no {msgtype}.msg was found on '
                       'AMENT_PREFIX_PATH (source the workspace first)')
    text = path.read_text()
    lines = [line for line in text.splitlines() if not line.lstrip().startswith('#')]
    for dep in _dependencies('\n'.join(lines), msgtype.split('/')[0]):
        if dep != msgtype:
            ensure_type(store, dep)
    store.register(get_types_from_msg(text, msgtype))


def make_typestore(msgtypes: list[str] = ()) -> Typestore:
    store = get_typestore(Stores.ROS2_KILTED)
    for msgtype in msgtypes:
        ensure_type(store, msgtype)
    return store
