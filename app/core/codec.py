"""JSON from outside read safely, and typed dataclasses to and from plain JSON data, with
errors that name the bad field."""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from enum import Enum
from typing import Any, TypeVar, cast

from app.core.errors import ConfigError

T = TypeVar("T")


class TooDeep(ValueError):
    """JSON nested deeper than Python's parser goes (no workflow or answer is)."""


def parse_json(text: str | bytes) -> Any:
    """json.loads for what comes from outside (files, instances, Runpod): bad JSON of any kind
    is a ValueError, never a RecursionError (a few KB of "[[[[…" is enough for one)."""
    try:
        return json.loads(text)
    except RecursionError:
        raise TooDeep("JSON nested thousands of levels deep (no workflow or answer is)") from None


def json_object(text: str | bytes) -> dict[str, Any] | None:
    """A JSON object from outside, or None for anything else (bad JSON, a list, a number…)."""
    try:
        data = parse_json(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


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


def unknown_keys(cls: type[Any], data: Any) -> dict[str, Any]:
    """What `data` holds that `cls` does not know (written by a newer version, say), nested
    the same way; items of a list of dataclasses are matched by their `name`."""
    if not dataclasses.is_dataclass(cls) or not isinstance(data, dict):
        return {}
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    extra: dict[str, Any] = {k: v for k, v in data.items() if k not in known}
    for name in known & data.keys():
        inner = _dataclass_in(hints[name])
        value = data[name]
        if inner is None:
            continue
        if isinstance(value, list):
            items = {
                str(item.get("name")): found
                for item in value
                if isinstance(item, dict) and (found := unknown_keys(inner, item))
            }
            if items:
                extra[name] = {ITEMS: items}
        elif found := unknown_keys(inner, value):
            extra[name] = found
    return extra


ITEMS = "__by_name__"


def _dataclass_in(tp: Any) -> type[Any] | None:
    """The dataclass a field holds, alone or as the items of a tuple."""
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return tp
    if typing.get_origin(tp) is tuple:
        item = typing.get_args(tp)[0]
        return item if dataclasses.is_dataclass(item) and isinstance(item, type) else None
    return None


def with_unknown(data: Any, extra: dict[str, Any]) -> Any:
    """`data` (from to_data) with the unknown keys put back where they were."""
    if not isinstance(data, dict):
        return data
    merged = dict(data)
    for key, value in extra.items():
        if key not in merged:
            merged[key] = value
        elif isinstance(value, dict) and ITEMS in value and isinstance(merged[key], list):
            by_name = value[ITEMS]
            merged[key] = [
                with_unknown(item, by_name.get(str(item.get("name")), {}))
                if isinstance(item, dict)
                else item
                for item in merged[key]
            ]
        elif isinstance(value, dict):
            merged[key] = with_unknown(merged[key], value)
    return merged
