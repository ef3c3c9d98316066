"""Runpod's own OpenAPI spec (tests/data/runpod/openapi-v2.json, a copy of shared/runpod/) as a
check: a request body or an answer is held against the schema the spec gives for that operation
and status."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from tests.conftest import DATA

SPEC_PATH = DATA / "runpod" / "openapi-v2.json"
BASE = "urn:runpod-openapi-v2"


@cache
def spec() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(SPEC_PATH.read_text(encoding="utf-8"))
    return loaded


@cache
def _registry() -> Registry:  # type: ignore[type-arg]
    return Registry().with_resource(BASE, DRAFT202012.create_resource(spec()))


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    """Follow a local $ref (responses and requestBodies are referenced by name)."""
    while "$ref" in node:
        target: Any = spec()
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def _operation(method: str, path: str) -> tuple[str, dict[str, Any]]:
    """The spec's path template matching a concrete path, and its operation."""
    for template, item in spec()["paths"].items():
        pattern = "^" + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$"
        if re.match(pattern, path) and method.lower() in item:
            return template, item[method.lower()]
    raise AssertionError(f"{method} {path} is not in Runpod's API")


def _check(schema: dict[str, Any], value: Any, what: str) -> None:
    validator = Draft202012Validator(_schema_ref(schema), registry=_registry())
    errors = sorted(validator.iter_errors(value), key=lambda e: list(e.path))
    assert not errors, f"{what}: " + "; ".join(
        f"{'/'.join(map(str, e.absolute_path)) or '$'}: {e.message}" for e in errors[:5]
    )


def _schema_ref(schema: dict[str, Any]) -> dict[str, Any]:
    """A schema from the spec, with its $refs made absolute into the registry."""
    text = json.dumps(schema).replace('"#/components/', f'"{BASE}#/components/')
    made: dict[str, Any] = json.loads(text)
    return made


@dataclass
class Exchange:
    method: str
    path: str
    body: Any  # the JSON sent, or None
    status: int
    content_type: str
    answer: Any  # the JSON answered (None for no body or a stream)
    headers: dict[str, str]


def check_request(method: str, path: str, body: Any) -> None:
    template, operation = _operation(method, path)
    request = operation.get("requestBody")
    if request is None:
        assert body is None, f"{method} {template} takes no body"
        return
    request = _resolve(request)
    schema = request["content"]["application/json"]["schema"]
    _check(schema, body, f"the request {method} {template}")


def check_answer(exchange: Exchange) -> None:
    template, operation = _operation(exchange.method, exchange.path)
    responses = operation["responses"]
    declared = responses.get(str(exchange.status)) or responses.get("default")
    assert declared is not None, f"{exchange.method} {template}: {exchange.status} is not declared"
    declared = _resolve(declared)
    content = declared.get("content") or {}
    if not content:
        assert exchange.answer is None, f"{exchange.method} {template} {exchange.status}: no body"
        return
    kind = exchange.content_type.split(";")[0].strip()
    assert kind in content, f"{exchange.method} {template} {exchange.status}: {kind} not declared"
    if kind == "text/event-stream":
        return
    _check(
        content[kind]["schema"],
        exchange.answer,
        f"the answer to {exchange.method} {template} ({exchange.status})",
    )
    if exchange.status < 500 and exchange.status != 401:
        assert "RateLimit" in exchange.headers and "RateLimit-Policy" in exchange.headers
