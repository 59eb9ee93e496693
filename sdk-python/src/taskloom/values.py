"""Conversions between Python values and `taskloom.v1.Value`, the typed
values runs take, tasks produce and runs return."""

from __future__ import annotations

from typing import Any, cast

from google.protobuf import json_format, struct_pb2

from taskloom.v1 import common_pb2

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1

#: What `to_value` accepts.
ValueLike = Any


def to_value(value: ValueLike) -> common_pb2.Value:
    """`str` → text, `bool` → boolean, `int` → integer, `float` → number,
    `dict`/`list`/`None` → json; `Value`, `ChatHistory` and `Vector`
    messages are taken as they are."""
    if isinstance(value, common_pb2.Value):
        return value
    if isinstance(value, common_pb2.ChatHistory):
        return common_pb2.Value(chat_history=value)
    if isinstance(value, common_pb2.Vector):
        return common_pb2.Value(vector=value)
    if isinstance(value, str):
        return common_pb2.Value(text=value)
    if isinstance(value, bool):
        return common_pb2.Value(boolean=value)
    if isinstance(value, int):
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise ValueError(f"integer {value} does not fit in 64 bits")
        return common_pb2.Value(integer=value)
    if isinstance(value, float):
        return common_pb2.Value(number=value)
    if value is None or isinstance(value, (dict, list, tuple)):
        return common_pb2.Value(json=json_value(value))
    raise TypeError(f"cannot convert {type(value).__name__} to a taskloom Value")


def json_value(value: Any) -> struct_pb2.Value:
    """A JSON-shaped Python value as `google.protobuf.Value`."""
    message = struct_pb2.Value()
    # ParseDict takes any JSON value for a google.protobuf.Value; its stub
    # says dict.
    document = list(value) if isinstance(value, tuple) else value
    json_format.ParseDict(cast(dict[str, Any], document), message)
    return message


def from_value(value: common_pb2.Value | None) -> Any:
    """The Python value of a `Value` (the inverse of `to_value`); `None`
    for an unset value. Chat histories and vectors stay messages."""
    if value is None:
        return None
    kind = value.WhichOneof("kind")
    if kind is None:
        return None
    if kind == "json":
        return json_format.MessageToDict(value.json)
    return getattr(value, kind)
