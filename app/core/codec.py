"""Typed dataclasses to and from plain JSON data, with errors that name the bad field."""

from __future__ import annotations

import dataclasses
import types
import typing
from enum import Enum
from typing import Any, TypeVar, cast

from app.core.errors import ConfigError

T = TypeVar("T")


def to_data(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_data(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, tuple | list):
        return [to_data(item) for item in value]
    return value


def from_data(cls: type[T], data: Any, path: str = "") -> T:
    """Build `cls` from `data`; missing keys take their defaults, unknown keys are ignored."""
    return cast(T, _convert(cls, data, path))


def _convert(tp: Any, data: Any, path: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if data is None and type(None) in options:
            return None
        inner = [o for o in options if o is not type(None)]
        return _convert(inner[0], data, path)
    if origin is tuple:
        if not isinstance(data, list):
            raise ConfigError(path, f"expected a list, found {type(data).__name__}")
        item_type = typing.get_args(tp)[0]
        return tuple(_convert(item_type, item, f"{path}[{i}]") for i, item in enumerate(data))
    if dataclasses.is_dataclass(tp):
        return _convert_dataclass(tp, data, path)
    if isinstance(tp, type) and issubclass(tp, Enum):
        try:
            return tp(data)
        except ValueError:
            allowed = ", ".join(str(m.value) for m in tp)
            raise ConfigError(path, f"{data!r} is not one of {allowed}") from None
    return _convert_scalar(tp, data, path)


def _convert_dataclass(tp: Any, data: Any, path: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(path or "config", f"expected an object, found {type(data).__name__}")
    hints = typing.get_type_hints(tp)
    kwargs = {}
    for f in dataclasses.fields(tp):
        if f.name in data:
            kwargs[f.name] = _convert(hints[f.name], data[f.name], _join(path, f.name))
    try:
        return tp(**kwargs)
    except TypeError as exc:
        raise ConfigError(path or "config", str(exc)) from None


def _convert_scalar(tp: Any, data: Any, path: str) -> Any:
    if tp is float and isinstance(data, int) and not isinstance(data, bool):
        return float(data)
    if tp is int and isinstance(data, bool):
        raise ConfigError(path, f"expected a number, found {data!r}")
    if not isinstance(data, tp):
        raise ConfigError(path, f"expected {tp.__name__}, found {data!r}")
    return data


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name
