"""API-format workflows: reading them, what they need from a worker, and ComfyUI's complaints.

Everything here is pure: the jobs service fetches `/object_info` and `/models/<folder>` and
hands the answers in; what comes back is typed and written for the user.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from app.core.codec import TooDeep, parse_json
from app.core.errors import ComfyFleetError

Workflow = dict[str, dict[str, Any]]

# Which model folder a loader's input names. Class-specific entries win over input names.
MODEL_INPUTS_BY_CLASS: dict[tuple[str, str], str] = {
    ("CLIPVisionLoader", "clip_name"): "clip_vision",
    ("UpscaleModelLoader", "model_name"): "upscale_models",
    ("PhotoMakerLoader", "photomaker_model_name"): "photomaker",
}
MODEL_INPUTS: dict[str, str] = {
    "ckpt_name": "checkpoints",
    "lora_name": "loras",
    "vae_name": "vae",
    "control_net_name": "controlnet",
    "unet_name": "diffusion_models",
    "clip_name": "text_encoders",
    "clip_name1": "text_encoders",
    "clip_name2": "text_encoders",
    "clip_name3": "text_encoders",
    "clip_name4": "text_encoders",
    "audio_encoder_name": "audio_encoders",
    "style_model_name": "style_models",
    "gligen_name": "gligen",
    "hypernetwork_name": "hypernetworks",
}


class WorkflowError(ComfyFleetError):
    """A workflow file that cannot be run, with the reason in plain words."""


@dataclass(frozen=True)
class ModelRef:
    folder: str
    filename: str
    node: str = field(default="", compare=False)  # the first node that names it


@dataclass(frozen=True)
class Capabilities:
    """What one participant offers: its node classes and its model files per folder."""

    node_classes: frozenset[str]
    models: Mapping[str, frozenset[str]]


@dataclass(frozen=True)
class PreflightResult:
    participant: str
    missing_nodes: tuple[str, ...] = ()
    missing_models: tuple[ModelRef, ...] = ()
    error: str = ""  # could not be asked at all (offline, not ComfyUI…)

    @property
    def ok(self) -> bool:
        return not (self.missing_nodes or self.missing_models or self.error)

    def summary(self) -> str:
        if self.error:
            return f"✘ {self.error}"
        if self.ok:
            return "✔ has every node and model"
        parts = []
        if self.missing_nodes:
            parts.append("missing nodes: " + ", ".join(self.missing_nodes))
        if self.missing_models:
            parts.append(
                "missing models: "
                + ", ".join(f"{m.folder}/{m.filename}" for m in self.missing_models)
            )
        return "✘ " + "; ".join(parts)


@dataclass(frozen=True)
class NodeProblem:
    node_id: str
    class_type: str
    message: str


@dataclass(frozen=True)
class Rejection:
    """Why ComfyUI refused a workflow, per node where it said so."""

    summary: str
    problems: tuple[NodeProblem, ...] = field(default_factory=tuple)

    def text(self) -> str:
        lines = [self.summary]
        lines += [f"  node {p.node_id} ({p.class_type}): {p.message}" for p in self.problems]
        return "\n".join(lines)


def load_workflow(text: str) -> Workflow:
    """Parse an API-format workflow; errors name the line and column (UI-format files are
    app.core.workflow_file's to tell apart)."""
    try:
        data = parse_json(text)
    except json.JSONDecodeError as exc:
        raise WorkflowError(
            f"not valid JSON: line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None
    except TooDeep as exc:
        raise WorkflowError(str(exc)) from None
    if isinstance(data, dict) and isinstance(data.get("prompt"), dict):
        data = data["prompt"]  # a saved /prompt request body
    if not isinstance(data, dict) or not data:
        raise WorkflowError('expected a JSON object of nodes: {"1": {"class_type": …}}')
    for node_id, node in data.items():
        if not isinstance(node, dict) or not isinstance(node.get("class_type"), str):
            raise WorkflowError(f"node {node_id!r} has no class_type: is this an API-format file?")
        if not isinstance(node.get("inputs", {}), dict):
            raise WorkflowError(f"node {node_id!r}: inputs must be an object")
    return data


def class_types(workflow: Workflow) -> set[str]:
    return {node["class_type"] for node in workflow.values()}


def model_refs(workflow: Workflow) -> list[ModelRef]:
    """Every model file the workflow names directly (a linked input is not a file name)."""
    refs: list[ModelRef] = []
    for node_id, node in workflow.items():
        for name, value in node.get("inputs", {}).items():
            folder = model_folder(node["class_type"], name)
            if folder and isinstance(value, str) and value:
                ref = ModelRef(folder, value.replace("\\", "/"), node_id)
                if ref not in refs:
                    refs.append(ref)
    return refs


def model_folder(class_type: str, input_name: str) -> str | None:
    """The model folder a loader input lists (ComfyUI's folder_paths), or None."""
    return MODEL_INPUTS_BY_CLASS.get((class_type, input_name)) or MODEL_INPUTS.get(input_name)


def preflight(participant: str, workflow: Workflow, caps: Capabilities) -> PreflightResult:
    missing_nodes = sorted(class_types(workflow) - caps.node_classes)
    missing_models = tuple(
        ref
        for ref in model_refs(workflow)
        if ref.filename not in {f.replace("\\", "/") for f in caps.models.get(ref.folder, ())}
    )
    return PreflightResult(participant, tuple(missing_nodes), missing_models)


def rejection_from_answer(status: int, body: Any) -> Rejection:
    """Both of ComfyUI's refusal shapes, in plain words.

    400 from `/prompt`: `{"error": {...}, "node_errors": {...}}`. 500 from ComfyUI-Distributed's
    `/distributed/queue`: `{"error": "Invalid prompt: <python repr>"}`. Anything else is shown
    as it came.
    """
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return _rejection(body["error"], body.get("node_errors") or {})
    text = body.get("error") if isinstance(body, dict) else body
    text = str(text if text is not None else body)
    prefix = "Invalid prompt: "
    if text.startswith(prefix):
        try:
            error = ast.literal_eval(text[len(prefix) :].split(" | validation_error=")[0])
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            error = None
        if isinstance(error, dict):
            return _rejection(error, error.get("node_errors") or {})
    return Rejection(f"ComfyUI refused the workflow (HTTP {status}): {text[:500]}")


_UNKNOWN_NODE = re.compile(r"Cannot execute because node (.+) does not exist\.")
_UNTYPED_NODE = "Cannot execute because a node is missing the class_type property."
_NODE_ID = re.compile(r"Node ID '#(.*)'")


def _unknown_node(error: Mapping[str, Any]) -> Rejection | None:
    """A node type the instance lacks, or a node without one, in the same words whichever
    ComfyUI said it: 0.3.64's invalid_prompt (the names in its message and details) or 0.38's
    missing_node_type (in its extra_info)."""
    message, details = str(error.get("message", "")), str(error.get("details", ""))
    if error.get("type") == "missing_node_type":
        info = error.get("extra_info") or {}
        node_id, class_type = info.get("node_id"), info.get("class_type")
    elif (unknown := _UNKNOWN_NODE.fullmatch(message)) or message == _UNTYPED_NODE:
        found = _NODE_ID.fullmatch(details)
        node_id, class_type = (found[1] if found else None), unknown and unknown[1]
    else:
        return None
    if not class_type:
        return Rejection(f"node {node_id or '?'} has no class_type: the workflow is damaged")
    problem = NodeProblem(
        str(node_id or "?"), str(class_type), "not installed: add the custom node that has it"
    )
    return Rejection(f"node type {class_type} is not installed there", (problem,))


def _rejection(error: Mapping[str, Any], node_errors: Mapping[str, Any]) -> Rejection:
    unknown = _unknown_node(error)
    if unknown is not None:
        return unknown
    summary = str(error.get("message") or "ComfyUI refused the workflow")
    problems: list[NodeProblem] = []
    for node_id, entry in node_errors.items():
        for err in entry.get("errors", []):
            problems.append(
                NodeProblem(str(node_id), str(entry.get("class_type", "?")), _plain(err))
            )
    if not problems and error.get("details"):
        summary = f"{summary} ({error['details']})"
    return Rejection(summary, tuple(problems))


def _plain(err: Mapping[str, Any]) -> str:
    info = err.get("extra_info") or {}
    name = info.get("input_name") or err.get("details") or ""
    kind = err.get("type")
    if kind == "value_not_in_list":
        return f"'{info.get('received_value', '?')}' is not available for {name} (missing file?)"
    if kind == "required_input_missing":
        return f"required input '{name}' is not connected"
    message = str(err.get("message", "invalid"))
    return f"{name}: {message}" if name and name not in message else message


def canary_workflow(seed: int, size: int = 64) -> Workflow:
    """The model-free distributed canary: each participant makes one small seeded image."""
    return {
        "1": {"class_type": "DistributedSeed", "inputs": {"seed": seed}},
        "2": {
            "class_type": "EmptyImage",
            "inputs": {"width": size, "height": size, "batch_size": 1, "color": 8421504},
        },
        "3": {
            "class_type": "ImageAddNoise",
            "inputs": {"image": ["2", 0], "seed": ["1", 0], "strength": 0.5},
        },
        "4": {
            "class_type": "DistributedCollector",
            "inputs": {"images": ["3", 0], "load_balance": False},
        },
        "5": {
            "class_type": "SaveImage",
            "inputs": {"images": ["4", 0], "filename_prefix": "comfyfleet_canary"},
        },
    }


def base_seed(workflow: Workflow) -> int | None:
    """The seed of the workflow's DistributedSeed: worker i gets seed + i + 1."""
    for node in workflow.values():
        if node["class_type"] == "DistributedSeed":
            seed = node.get("inputs", {}).get("seed")
            if isinstance(seed, int) and not isinstance(seed, bool):
                return seed
    return None


# What makes ComfyUI-Distributed spread a run over the workers (REFERENCE §2).
COLLECTORS = frozenset({"DistributedCollector", "UltimateSDUpscaleDistributed"})


def is_distributed(workflow: Workflow) -> bool:
    """Without a collector the master runs it alone and the workers stay idle."""
    return any(node.get("class_type") in COLLECTORS for node in workflow.values())


MASTER_ONLY = (
    "This workflow has no DistributedCollector: ComfyUI-Distributed runs it on the master "
    "alone, and the workers stay idle. To make many images at the speed of the whole fleet, "
    "add it to the queue instead."
)
