"""UI-format workflows into API prompts, against what the real frontend (1.27.10 on ComfyUI
0.3.64) produced for each recorded case."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from app.core.ui_workflow import ConversionError, is_ui_workflow, to_prompt
from app.core.workflow import WorkflowError
from tests.conftest import RECORDINGS

CASES = RECORDINGS / "ui_workflows"
CASE_DIRS = sorted(p for p in CASES.iterdir() if (p / "ui.json").is_file())


def read(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def object_info() -> dict[str, Any]:
    info: dict[str, Any] = read(CASES / "object_info.json")
    return info


def test_every_recorded_case_is_here() -> None:
    assert len(CASE_DIRS) == 30


@pytest.mark.parametrize("case", CASE_DIRS, ids=[p.name for p in CASE_DIRS])
def test_the_prompt_is_the_one_the_frontend_made(case: Path, object_info: dict[str, Any]) -> None:
    ui = read(case / "ui.json")
    workers = []
    if (case / "distributed_config.json").is_file():
        workers = read(case / "distributed_config.json")["workers"]
    assert is_ui_workflow(ui)
    assert to_prompt(ui, object_info, workers) == read(case / "api.json")


def test_distributed_values_follow_the_masters_workers(object_info: dict[str, Any]) -> None:
    ui = read(CASES / "c17_distributed_graph" / "ui.json")
    one = [{"id": "fleet-w1", "name": "w1", "enabled": True}, {"id": "off", "enabled": False}]
    inputs = to_prompt(ui, object_info, one)["10"]["inputs"]
    assert inputs["_dv_worker_1"] == 0 and "_dv_worker_2" not in inputs
    assert json.loads(inputs["worker_values"]) == {
        "1": "0",
        "_type": "INT",
        "_by_worker_id": {"fleet-w1": "0"},
    }


def test_a_node_the_master_lacks_is_named_with_its_pack(object_info: dict[str, Any]) -> None:
    ui = read(CASES / "t01_default_txt2img" / "ui.json")
    sampler = next(n for n in ui["nodes"] if n["type"] == "KSampler")
    sampler.update(type="FaceDetailer", title="Fix faces")
    sampler["properties"] = {"cnr_id": "comfyui-impact-pack", "ver": "8.8.1"}
    with pytest.raises(ConversionError) as raised:
        to_prompt(ui, object_info)
    assert raised.value.problems == [
        f"node {sampler['id']} “Fix faces” (FaceDetailer): this master has no such node; "
        "install the custom-node pack “comfyui-impact-pack” on it"
    ]


def test_a_muted_unknown_node_is_no_problem(object_info: dict[str, Any]) -> None:
    ui = read(CASES / "c04_mute_middle" / "ui.json")
    muted = next(n for n in ui["nodes"] if n["mode"] == 2)
    muted["type"] = "SomethingNobodyHas"
    assert to_prompt(ui, object_info) == read(CASES / "c04_mute_middle" / "api.json")


def test_broken_files_are_explained_per_node(object_info: dict[str, Any]) -> None:
    with pytest.raises(WorkflowError, match="no 'nodes'"):
        to_prompt({"links": []}, object_info)
    ui = copy.deepcopy(read(CASES / "t01_default_txt2img" / "ui.json"))
    decode = next(n for n in ui["nodes"] if n["type"] == "VAEDecode")
    samples = decode["inputs"][0]
    link = next(entry for entry in ui["links"] if entry[0] == samples["link"])
    link[1] = 99  # its origin is not in the workflow
    ui["links"] = [entry for entry in ui["links"] if entry[0] != decode["inputs"][1]["link"]]
    with pytest.raises(ConversionError) as raised:
        to_prompt(ui, object_info)
    assert raised.value.problems == [
        f"node {decode['id']} (VAEDecode): input 'samples' comes from node 99, "
        "which is not in the workflow",
        f"node {decode['id']} (VAEDecode): input 'vae' has link "
        f"{decode['inputs'][1]['link']}, which is missing",
    ]
    assert "cannot be converted" in str(raised.value)
