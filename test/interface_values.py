"""Fill any ROS 2 message with non-default values in every field, recursively (for interface tests)."""
import array

from rosidl_parser import definition as d

_INTS = {'int8': 8, 'int16': 16, 'int32': 32, 'int64': 64, 'uint8': 8, 'uint16': 16, 'uint32': 32,
         'uint64': 64, 'char': 8, 'octet': 8, 'byte': 8}


def _basic(type_name: str, seed: int):
    if type_name == 'boolean':
        return seed % 2 == 0 or True
    if type_name in ('float', 'double'):
        return 0.25 + seed  # exactly representable in float32
    if type_name == 'octet' or type_name == 'byte':
        return bytes([(seed * 7 + 3) % 256])
    if type_name in _INTS:
        bits = _INTS[type_name]
        signed = type_name.startswith('int')
        # A large magnitude, so that a field truncated to a narrower type shows.
        value = (1 << (bits - 2)) + seed if bits > 8 else 100 + seed % 20
        return -value if signed else value
    raise TypeError(type_name)


def _value(slot_type, seed: int):
    if isinstance(slot_type, d.BasicType):
        return _basic(slot_type.typename, seed)
    if isinstance(slot_type, (d.UnboundedString, d.BoundedString, d.UnboundedWString, d.BoundedWString)):
        return f'text-{seed}-ü'
    if isinstance(slot_type, d.NamespacedType):
        module = __import__('.'.join(slot_type.namespaces), fromlist=[slot_type.name])
        return filled(getattr(module, slot_type.name)(), seed)
    if isinstance(slot_type, d.AbstractNestedType):
        size = slot_type.size if isinstance(slot_type, d.Array) else 3
        items = [_value(slot_type.value_type, seed + i) for i in range(size)]
        if isinstance(slot_type.value_type, d.BasicType):
            name = slot_type.value_type.typename
            if name in ('octet', 'byte'):
                return [bytes(x) for x in items] if isinstance(slot_type, d.Array) else b''.join(items)
            if name == 'uint8' and not isinstance(slot_type, d.Array):
                return array.array('B', items)
        return items
    raise TypeError(slot_type)


def filled(msg, seed: int = 1):
    """``msg`` with every field set to a value that differs from its default and from other fields."""
    for index, (name, slot_type) in enumerate(zip(msg.get_fields_and_field_types(), msg.SLOT_TYPES)):
        setattr(msg, name, _value(slot_type, seed * 31 + index))
    return msg


def fields_differ_from_default(msg) -> list[str]:
    """Names of fields still at their default value (empty when ``filled`` reached every field)."""
    default = type(msg)()
    return [name for name in msg.get_fields_and_field_types() if getattr(msg, name) == getattr(default, name)]
