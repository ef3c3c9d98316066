"""Workflow files, model references, rejections and attribution, without any server."""

from __future__ import annotations

import json

import pytest

from app.core.model_script import missing_models_script
from app.core.runs import MASTER, attribute_by_order, seed_for
from app.core.workflow import (
    Capabilities,
    ModelRef,
    WorkflowError,
    canary_workflow,
    load_workflow,
    model_folder,
    model_refs,
    preflight,
    rejection_from_answer,
)
from app.core.workflow_file import read_workflow
from tests.conftest import RECORDINGS
from tests.integration.sim_client import recorded_http


def test_a_ui_format_file_is_told_apart_for_conversion() -> None:
    ui = {"last_node_id": 4, "nodes": [], "links": []}
    file = read_workflow(json.dumps(ui).encode(), "saved.json")
    assert file.needs_conversion and file.ui == ui and file.kind == "a UI-format workflow"
    api = read_workflow(b'{"1": {"class_type": "EmptyImage", "inputs": {}}}', "api.json")
    assert not api.needs_conversion and api.kind == "an API-format workflow"


def test_invalid_json_names_line_and_column() -> None:
    with pytest.raises(WorkflowError, match="line 2, column 6"):
        load_workflow('{"1":\n  "x": }')


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[]", "JSON object of nodes"),
        ('{"1": {"inputs": {}}}', "no class_type"),
        ("{}", "JSON object"),
    ],
)
def test_other_bad_shapes(text: str, needle: str) -> None:
    with pytest.raises(WorkflowError, match=needle):
        load_workflow(text)


def test_a_saved_prompt_body_is_accepted() -> None:
    graph = canary_workflow(1)
    assert load_workflow(json.dumps({"prompt": graph, "client_id": "x"})) == graph


def test_model_refs_by_loader_input_and_class() -> None:
    graph = {
        "1": {
            "class_type": "CheckpointLoaderSimple",
            "inputs": {"ckpt_name": "sdxl\\base.safetensors"},
        },
        "2": {
            "class_type": "LoraLoader",
            "inputs": {"lora_name": "a.safetensors", "model": ["1", 0]},
        },
        "3": {"class_type": "CLIPVisionLoader", "inputs": {"clip_name": "vit.safetensors"}},
        "4": {"class_type": "UpscaleModelLoader", "inputs": {"model_name": "x2.pth"}},
        "5": {"class_type": "VAELoader", "inputs": {"vae_name": ["9", 0]}},  # linked: not a file
    }
    assert model_refs(graph) == [
        ModelRef("checkpoints", "sdxl/base.safetensors"),
        ModelRef("loras", "a.safetensors"),
        ModelRef("clip_vision", "vit.safetensors"),
        ModelRef("upscale_models", "x2.pth"),
    ]


def test_preflight_and_the_checklist_script() -> None:
    graph = {
        "1": {
            "class_type": "CheckpointLoaderSimple",
            "inputs": {"ckpt_name": "my model.safetensors"},
        },
        "2": {"class_type": "FancyNode", "inputs": {}},
    }
    caps = Capabilities(frozenset({"CheckpointLoaderSimple"}), {"checkpoints": frozenset()})
    result = preflight("w1", graph, caps)
    assert not result.ok
    assert result.missing_nodes == ("FancyNode",)
    script = missing_models_script([result])
    assert "# --- w1 ---\n# fill by hand: models/checkpoints/my model.safetensors" in script
    ok = preflight(
        "w2",
        graph,
        Capabilities(
            frozenset({"CheckpointLoaderSimple", "FancyNode"}),
            {"checkpoints": frozenset({"my model.safetensors"})},
        ),
    )
    assert ok.ok and ok.summary().startswith("✔")


def test_both_recorded_rejections_read_per_node() -> None:
    http = recorded_http()
    distributed = http["invalid:master:POST /distributed/queue (validation errors)"]
    rejection = rejection_from_answer(distributed["status"], distributed["body"])
    assert rejection.summary == "Prompt outputs failed validation"
    assert [(p.node_id, p.class_type) for p in rejection.problems] == [
        ("1", "EmptyImage"),
        ("2", "ImageAddNoise"),
    ]
    assert rejection.problems[0].message == "width: Value 0 smaller than min of 1"
    plain = http["invalid:master:POST /prompt (validation errors)"]
    assert rejection_from_answer(400, plain["body"]).problems == rejection.problems
    unknown = http["invalid:master:POST /prompt (unknown node)"]["body"]
    assert rejection_from_answer(400, unknown).text() == (
        "node type NoSuchNode is not installed there\n"
        "  node 1 (NoSuchNode): not installed: add the custom node that has it"
    )
    other = rejection_from_answer(400, {"error": "client_id required"})
    assert "client_id required" in other.summary and not other.problems


def test_038s_node_type_errors_read_as_0364s() -> None:
    routes = json.loads((RECORDINGS / "comfyui-0.38" / "routes.json").read_text(encoding="utf-8"))
    answers = {a.get("case", ""): a["body"] for a in routes["details"]["POST /prompt"]["responses"]}
    new_unknown = next(b for c, b in answers.items() if c.startswith("unknown class_type"))
    new_untyped = next(b for c, b in answers.items() if c.startswith("node without class_type"))
    http = recorded_http()
    old_unknown = http["invalid:master:POST /prompt (unknown node)"]["body"]
    assert rejection_from_answer(400, new_unknown) == rejection_from_answer(400, old_unknown)
    old_untyped = {
        "error": {
            "type": "invalid_prompt",
            "message": "Cannot execute because a node is missing the class_type property.",
            "details": "Node ID '#1'",
            "extra_info": {},
        },
        "node_errors": {},
    }  # (0.3.64's execution.py at a125cd84; not among the recorded answers)
    untyped = rejection_from_answer(400, new_untyped)
    assert untyped == rejection_from_answer(400, old_untyped)
    assert untyped.summary == "node 1 has no class_type: the workflow is damaged"


def test_missing_model_reads_as_a_missing_file() -> None:
    body = {
        "error": {
            "type": "prompt_outputs_failed_validation",
            "message": "Prompt outputs failed validation",
            "details": "",
            "extra_info": {},
        },
        "node_errors": {
            "5": {
                "class_type": "UpscaleModelLoader",
                "dependent_outputs": ["4"],
                "errors": [
                    {
                        "type": "value_not_in_list",
                        "message": "Value not in list",
                        "details": "model_name: 'x.pth' not in []",
                        "extra_info": {"input_name": "model_name", "received_value": "x.pth"},
                    }
                ],
            }
        },
    }
    (problem,) = rejection_from_answer(400, body).problems
    assert problem.message == "'x.pth' is not available for model_name (missing file?)"


def test_attribution_by_order_and_seeds() -> None:
    order = [MASTER, "w1", "w2"]
    assert attribute_by_order(3, order, {MASTER: 1, "w1": 1, "w2": 1}) == [MASTER, "w1", "w2"]
    assert attribute_by_order(2, order, {MASTER: 1, "w1": 1, "w2": 1}) is None  # one missing
    assert attribute_by_order(4, order, {MASTER: 2, "w1": 1, "w2": 1}) == [
        MASTER,
        MASTER,
        "w1",
        "w2",
    ]
    assert [seed_for(10, order[1:], n) for n in order] == [10, 11, 12]
    assert seed_for(None, order[1:], "w1") is None


def test_the_preflights_model_folders_agree_with_the_recordings() -> None:
    from tests.integration.test_sim_fidelity import recorded_model_inputs

    for (class_type, name), folder in recorded_model_inputs().items():
        assert model_folder(class_type, name) == folder, (class_type, name)
