"""pi07_msgs: every interface builds into Python types, serialises losslessly, and documents every field."""
import re
from pathlib import Path

import pytest
from interface_values import fields_differ_from_default, filled

PKG = Path(__file__).resolve().parents[1]
INTERFACE_FILES = sorted([*PKG.glob('msg/*.msg'), *PKG.glob('srv/*.srv'), *PKG.glob('action/*.action')])
FIELD = re.compile(r'^\s*([A-Za-z_][\w/]*(?:\[[^\]]*\])?)\s+([a-z_]\w*)(\s+[^=#].*)?$')


def test_design_interfaces_exist():
    names = {p.stem for p in INTERFACE_FILES}
    assert {'Task', 'EpisodeMetadata', 'Subtask', 'SubgoalImages', 'ActionChunk', 'LanguageMemory', 'VisualMemory',
            'TaskStatus', 'Interject', 'ResetMemory', 'ExecuteTask'} <= names


@pytest.mark.parametrize('path', INTERFACE_FILES, ids=lambda p: p.name)
def test_every_field_is_commented(path):
    """Each field has a comment on its line, or heads of a group of consecutive fields has one above it."""
    lines = path.read_text().splitlines()
    for number, line in enumerate(lines):
        code = line.split('#', 1)[0]
        match = FIELD.match(code)
        if not match or '=' in code or '#' in line:
            continue  # blank, comment, separator, constant, or commented inline
        above = number - 1
        while above >= 0 and (FIELD.match(lines[above].split('#', 1)[0]) or '=' in lines[above].split('#', 1)[0]):
            above -= 1  # a field shares the comment above its group of fields and constants
        assert above >= 0 and lines[above].strip().startswith('#'), \
            f'{path.name}:{number + 1}: field "{match.group(2)}" has no comment'


def _all_types():
    import pi07_msgs.action as actions
    import pi07_msgs.msg as msgs
    import pi07_msgs.srv as srvs

    found = [cls for cls in vars(msgs).values() if isinstance(cls, type) and hasattr(cls, 'SLOT_TYPES')]
    for module, parts in ((srvs, ('Request', 'Response')), (actions, ('Goal', 'Result', 'Feedback'))):
        for cls in vars(module).values():
            if isinstance(cls, type) and all(hasattr(cls, p) for p in parts):
                found += [getattr(cls, p) for p in parts]
    return found


def test_serialisation_round_trip_keeps_every_field():
    from rclpy.serialization import deserialize_message, serialize_message

    types = _all_types()
    assert len(types) >= 9 + 3 * 2 + 3
    for seed, cls in enumerate(types, start=1):
        msg = filled(cls(), seed)
        assert not fields_differ_from_default(msg), cls.__name__
        assert deserialize_message(serialize_message(msg), cls) == msg, cls.__name__


def test_constants_and_sentinels():
    from pi07_msgs.msg import ActionChunk, EpisodeMetadata, Subtask, Task, TaskStatus

    meta = EpisodeMetadata()
    assert meta.speed == EpisodeMetadata.SPEED_UNSPECIFIED
    assert meta.quality == EpisodeMetadata.QUALITY_UNSPECIFIED
    assert meta.mistake == EpisodeMetadata.MISTAKE_UNSPECIFIED == -1
    assert (EpisodeMetadata.CONTROL_JOINT, EpisodeMetadata.CONTROL_EE) == ('joint', 'ee')
    assert Task.SUBTASKS_FROM_POLICY == 0 and Task().subtask_source == Task.SUBTASKS_FROM_POLICY
    assert Subtask.SOURCE_HUMAN == 'human'
    assert TaskStatus.STATE_SUCCEEDED == 2
    chunk = ActionChunk(horizon=2, action_dim=3, actions=[float(i) for i in range(6)])
    assert len(chunk.actions) == chunk.horizon * chunk.action_dim
