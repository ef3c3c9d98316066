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


def validate_prompt(prompt: Any, catalogue: dict[str, Any]) -> ValidationResult:
    if not isinstance(prompt, dict):
        return ValidationResult(_error("invalid_prompt", "Prompt is not a dict of nodes"))
    for node_id, node in prompt.items():
        class_type = node.get("class_type") if isinstance(node, dict) else None
        if class_type is None:
            return ValidationResult(
                _error(
                    "invalid_prompt",
                    "Cannot execute because a node is missing the class_type property.",
                    f"Node ID '#{node_id}'",
                )
            )
        if class_type not in catalogue:
            return ValidationResult(
                _error(
                    "invalid_prompt",
                    f"Cannot execute because node {class_type} does not exist.",
                    f"Node ID '#{node_id}'",
                )
            )
    outputs = [nid for nid, node in prompt.items() if catalogue[node["class_type"]]["output_node"]]
    if not outputs:
        return ValidationResult(_error("prompt_no_outputs", "Prompt has no outputs"))
    # A cycle upstream of an output: ComfyUI 0.3.64's recursive validate_inputs runs into
    # Python's recursion limit; the RecursionError is caught as an inner validation error, but
    # outer calls for the same nodes overwrite it with an empty one, so the output fails
    # without a reason and without node_errors ("Output will be ignored").
    outputs = [output for output in outputs if not _in_a_cycle(prompt, output)]
    if not outputs:
        return ValidationResult(
            _error("prompt_outputs_failed_validation", "Prompt outputs failed validation")
        )
    node_errors: dict[str, Any] = {}
    for output in outputs:
        for node_id in _upstream(prompt, output):
            errors = _node_errors(prompt, node_id, catalogue)
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


def _in_a_cycle(prompt: dict[str, Any], output: str) -> bool:
    """Whether following the links up from `output` comes back to a node on the way."""
    on_path: set[str] = set()
    done: set[str] = set()
    stack = [(output, False)]
    while stack:
        current, leaving = stack.pop()
        if leaving:
            on_path.discard(current)
            done.add(current)
            continue
        if current in on_path:
            return True
        if current in done or current not in prompt:
            continue
        on_path.add(current)
        stack.append((current, True))
        for value in prompt[current].get("inputs", {}).values():
            if is_link(value):
                if value[0] in on_path:
                    return True
                stack.append((value[0], False))
    return False


def execution_order(prompt: dict[str, Any], outputs: list[str]) -> list[str]:
    order: list[str] = []
    for output in outputs:
        order.extend(n for n in _upstream(prompt, output) if n not in order)
    return order


def _node_errors(prompt: dict[str, Any], node_id: str, catalogue: dict[str, Any]) -> list[Any]:
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
            problem = _value_error(name, config, value)
            if problem:
                errors.append(problem)
    return errors


def _value_error(name: str, config: list[Any], value: Any) -> dict[str, Any] | None:
    kind = config[0]
    options = config[1] if len(config) > 1 and isinstance(config[1], dict) else {}
    extra = {"input_name": name, "input_config": config, "received_value": value}
    choices = combo_options(config)
    if choices is not None:
        if value not in choices:
            return {
                "type": "value_not_in_list",
                "message": "Value not in list",
                "details": f"{name}: '{value}' not in {choices}",
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
