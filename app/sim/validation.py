"""Prompt validation with ComfyUI's error shapes (execution.validate_prompt)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from app.sim.catalogue import combo_options


@dataclass
class ValidationResult:
    error: dict[str, Any] | None = None
    node_errors: dict[str, Any] = field(default_factory=dict)
    outputs: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None


def _error(kind: str, message: str, details: str = "") -> dict[str, Any]:
    return {"type": kind, "message": message, "details": details, "extra_info": {}}


def is_link(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)


def validate_prompt(
    prompt: Any, catalogue: dict[str, Any], version: str = "0.3.64"
) -> ValidationResult:
    """As execution.validate_prompt of 0.3.64, or of 0.38 (recordings/comfyui-0.38/routes.json,
    POST /prompt: missing_node_type for an unknown or absent class_type, dependency_cycle)."""
    if not isinstance(prompt, dict):
        return ValidationResult(_error("invalid_prompt", "Prompt is not a dict of nodes"))
    unknown = _unknown_node(prompt, catalogue, version)
    if unknown is not None:
        return ValidationResult(unknown)
    outputs = [nid for nid, node in prompt.items() if catalogue[node["class_type"]]["output_node"]]
    if not outputs:
        return ValidationResult(_error("prompt_no_outputs", "Prompt has no outputs"))
    if version == "0.38":
        cycles = {o: c for o in outputs if (c := _cycle(prompt, o))}
        if cycles:
            return ValidationResult(
                _error("prompt_outputs_failed_validation", "Prompt outputs failed validation"),
                _cycle_errors(prompt, cycles),
                outputs,
            )
    # A cycle upstream of an output: ComfyUI 0.3.64's recursive validate_inputs runs into
    # Python's recursion limit; the RecursionError is caught as an inner validation error, but
    # outer calls for the same nodes overwrite it with an empty one, so the output fails
    # without a reason and without node_errors ("Output will be ignored").
    outputs = [output for output in outputs if not _cycle(prompt, output)]
    if not outputs:
        return ValidationResult(
            _error("prompt_outputs_failed_validation", "Prompt outputs failed validation")
        )
    node_errors: dict[str, Any] = {}
    for output in outputs:
        for node_id in _upstream(prompt, output):
            errors = _node_errors(prompt, node_id, catalogue, version)
            if not errors:
                continue
            entry = node_errors.setdefault(
                node_id,
                {
                    "errors": errors,
                    "dependent_outputs": [],
                    "class_type": prompt[node_id]["class_type"],
                },
            )
            entry["dependent_outputs"].append(output)
    if node_errors:
        error = _error("prompt_outputs_failed_validation", "Prompt outputs failed validation")
        return ValidationResult(error, node_errors, outputs)
    return ValidationResult(None, {}, outputs)


def _upstream(prompt: dict[str, Any], node_id: str) -> list[str]:
    """node_id and everything it depends on, dependencies first."""
    order: list[str] = []
    stack = [(node_id, False)]
    seen: set[str] = set()
    while stack:
        current, expanded = stack.pop()
        if expanded:
            order.append(current)
            continue
        if current in seen or current not in prompt:
            continue
        seen.add(current)
        stack.append((current, True))
        for value in prompt[current].get("inputs", {}).values():
            if is_link(value):
                stack.append((value[0], False))
    return order


def _cycle(prompt: dict[str, Any], output: str) -> list[str]:
    """The nodes of a cycle met following the links up from `output` (none: [])."""
    path: list[str] = []
    done: set[str] = set()
    stack = [(output, False)]
    while stack:
        current, leaving = stack.pop()
        if leaving:
            path.pop()
            done.add(current)
            continue
        if current in path:
            return path[path.index(current) :]
        if current in done or current not in prompt:
            continue
        path.append(current)
        stack.append((current, True))
        for value in prompt[current].get("inputs", {}).values():
            if is_link(value):
                if value[0] in path:
                    return path[path.index(value[0]) :]
                stack.append((value[0], False))
    return []


def _cycle_errors(prompt: dict[str, Any], cycles: dict[str, list[str]]) -> dict[str, Any]:
    """0.38's dependency_cycle node error, on the cycle's first node."""
    node_errors: dict[str, Any] = {}
    for output, cycle in cycles.items():
        first = cycle[0]
        shown = " -> ".join(f"{n} ({prompt[n]['class_type']})" for n in [*cycle, first])
        entry = node_errors.setdefault(
            first,
            {
                "errors": [
                    {
                        "type": "dependency_cycle",
                        "message": "Dependency cycle detected",
                        "details": shown,
                        "extra_info": {"node_id": first, "cycle_nodes": cycle},
                    }
                ],
                "dependent_outputs": [],
                "class_type": prompt[first]["class_type"],
            },
        )
        entry["dependent_outputs"].append(output)
    return node_errors


def _unknown_node(
    prompt: dict[str, Any], catalogue: dict[str, Any], version: str
) -> dict[str, Any] | None:
    """The error for the first node without a known class_type."""
    for node_id, node in prompt.items():
        class_type = node.get("class_type") if isinstance(node, dict) else None
        if class_type is None or class_type not in catalogue:
            if version == "0.38":
                return _missing_node_type(node_id, node, class_type)
            message = (
                "Cannot execute because a node is missing the class_type property."
                if class_type is None
                else f"Cannot execute because node {class_type} does not exist."
            )
            return _error("invalid_prompt", message, f"Node ID '#{node_id}'")
    return None


def _missing_node_type(node_id: str, node: Any, class_type: Any) -> dict[str, Any]:
    meta = node.get("_meta") if isinstance(node, dict) else None
    title = meta.get("title") if isinstance(meta, dict) else None
    if class_type is None:
        shown = title or f"ID #{node_id}"
        message = (
            f"Node '{shown}' has no class_type. The workflow may be corrupted or a custom node "
            "is missing."
        )
    else:
        message = f"Node '{title or class_type}' not found. The custom node may not be installed."
    return {
        "type": "missing_node_type",
        "message": message,
        "details": f"Node ID '#{node_id}'",
        "extra_info": {
            "node_id": str(node_id),
            "class_type": class_type,
            "node_title": title or class_type,
        },
    }


def execution_order(prompt: dict[str, Any], outputs: list[str]) -> list[str]:
    order: list[str] = []
    for output in outputs:
        order.extend(n for n in _upstream(prompt, output) if n not in order)
    return order


def _node_errors(
    prompt: dict[str, Any], node_id: str, catalogue: dict[str, Any], version: str
) -> list[Any]:
    node = prompt[node_id]
    spec = catalogue[node["class_type"]]["input"]
    inputs = node.get("inputs", {})
    errors = []
    for section in ("required", "optional"):
        for name, config in (spec.get(section) or {}).items():
            if name not in inputs:
                if section == "required":
                    errors.append(
                        {
                            "type": "required_input_missing",
                            "message": "Required input is missing",
                            "details": name,
                            "extra_info": {"input_name": name},
                        }
                    )
                continue
            value = inputs[name]
            if is_link(value):
                if value[0] not in prompt:
                    errors.append(
                        {
                            "type": "exception_during_inner_validation",
                            "message": "Exception when validating inner node",
                            "details": f"{name}: linked node {value[0]} does not exist",
                            "extra_info": {"input_name": name},
                        }
                    )
                continue
            problem = _value_error(name, config, value, version)
            if problem:
                errors.append(problem)
    return errors


def _value_error(name: str, config: list[Any], value: Any, version: str) -> dict[str, Any] | None:
    kind = config[0]
    options = config[1] if len(config) > 1 and isinstance(config[1], dict) else {}
    extra = {"input_name": name, "input_config": config, "received_value": value}
    choices = combo_options(config)
    if choices is not None:
        if value not in choices:
            return {
                "type": "value_not_in_list",
                "message": "Value not in list",
                # 0.38: the repr of the value (5, not '5')
                "details": f"{name}: {value!r} not in {choices}"
                if version == "0.38"
                else f"{name}: '{value}' not in {choices}",
                "extra_info": extra,
            }
        return None
    if kind not in ("INT", "FLOAT"):
        return None
    try:
        number = int(value) if kind == "INT" else float(value)
    except (TypeError, ValueError) as exc:
        return {
            "type": "invalid_input_type",
            "message": f"Failed to convert an input value to a {kind} value",
            "details": f"{name}, {value}, {exc}",
            "extra_info": {**extra, "exception_message": str(exc)},
        }
    if "min" in options and number < options["min"]:
        return {
            "type": "value_smaller_than_min",
            "message": f"Value {number} smaller than min of {options['min']}",
            "details": name,
            "extra_info": extra,
        }
    if "max" in options and number > options["max"]:
        return {
            "type": "value_bigger_than_max",
            "message": f"Value {number} bigger than max of {options['max']}",
            "details": name,
            "extra_info": extra,
        }
    return None


def distributed_error_text(result: ValidationResult) -> str:
    """ComfyUI-Distributed's 500 answer: a Python repr of the validation error."""
    assert result.error is not None
    details = " | ".join(
        f"{entry['class_type']}#{node_id}: {err['message']} ({err['details']})"
        for node_id, entry in result.node_errors.items()
        for err in entry["errors"]
    )
    error = {
        **result.error,
        "details": details or result.error["details"],
        "node_errors": _tuples(result.node_errors),
    }
    return f"Invalid prompt: {error!r}"


def _tuples(value: Any, key: str = "") -> Any:
    if isinstance(value, dict):
        return {k: _tuples(v, k) for k, v in value.items()}
    if isinstance(value, list):
        items = [_tuples(v) for v in value]
        return tuple(items) if key == "input_config" else items
    return value
