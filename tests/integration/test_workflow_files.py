"""The workflows people have, on simulated fleets: UI-format files converted with the master's
nodes, and images that carry their prompt and workflow as ComfyUI writes them."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from app.core.config import FleetConfig, MasterConfig
from app.core.image_meta import embedded_texts
from app.core.workflow_file import read_workflow
from app.services.storage import ConfigStore
from app.sim.fleet import SimInstance, http_json
from tests.conftest import RECORDINGS
from tests.integration.cli_helpers import comfy_fleet
from tests.waiting import wait_until

CASES = RECORDINGS / "ui_workflows"
PNG_CASE = CASES / "png_metadata"
SD15 = '{"checkpoints": ["v1-5-pruned-emaonly-fp16.safetensors"]}'  # what the templates name


def read(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def finished(sim: SimInstance, body: dict[str, Any]) -> dict[str, Any]:
    """POST /prompt and wait for its history entry."""
    prompt_id = http_json(f"{sim.url}/prompt", body)["prompt_id"]
    wait_until(lambda: prompt_id in http_json(f"{sim.url}/history/{prompt_id}"), timeout=30)
    entry: dict[str, Any] = http_json(f"{sim.url}/history/{prompt_id}")[prompt_id]
    assert entry["status"]["status_str"] == "success", entry["status"]
    return entry


def first_file(sim: SimInstance, entry: dict[str, Any]) -> bytes:
    image = next(i for node in entry["outputs"].values() for i in node.get("images", []))
    query = urllib.parse.urlencode({k: image[k] for k in ("filename", "subfolder", "type")})
    with urllib.request.urlopen(f"{sim.url}/view?{query}", timeout=10) as response:
        data: bytes = response.read()
    return data


def master_config(tmp_path: Path, master: SimInstance) -> Path:
    path = tmp_path / "fleet.json"
    ConfigStore(path).save(FleetConfig(master=MasterConfig(port=master.port)))
    return path


def test_the_simulators_png_carries_prompt_and_workflow_as_comfyui_writes_them(
    sim_factory: Callable[..., SimInstance],
) -> None:
    sim = sim_factory("png")
    body = read(PNG_CASE / "post_body.json")  # what the real frontend posted for image.png
    data = first_file(sim, finished(sim, body))
    recorded = read(PNG_CASE / "text_chunks.json")
    texts = embedded_texts(data)
    assert list(texts)[:2] == list(embedded_texts((PNG_CASE / "image.png").read_bytes()))
    assert texts["prompt"] == recorded["prompt"]  # byte for byte: json.dumps of the prompt
    assert texts["workflow"] == recorded["workflow"]
    file = read_workflow(data, "made.png")
    assert file.prompt == read(PNG_CASE / "api.json") and file.ui == read(PNG_CASE / "ui.json")


def test_the_simulators_webp_carries_them_in_exif_as_comfyui_writes_them(
    sim_factory: Callable[..., SimInstance],
) -> None:
    sim = sim_factory("webp")
    prompt = read(PNG_CASE / "api.json")
    prompt["3"] = {
        "class_type": "SaveAnimatedWEBP",
        "inputs": {
            "images": ["2", 0],
            "filename_prefix": "anim",
            "fps": 6.0,
            "lossless": True,
            "quality": 80,
            "method": "default",
        },
    }
    ui = read(PNG_CASE / "ui.json")
    entry = finished(sim, {"prompt": prompt, "extra_data": {"extra_pnginfo": {"workflow": ui}}})
    data = first_file(sim, entry)
    assert data[:4] == b"RIFF" and data[8:12] == b"WEBP"
    texts = embedded_texts(data)
    assert texts == {"prompt": json.dumps(prompt), "workflow": json.dumps(ui)}
    file = read_workflow(data, "made.webp")
    assert file.prompt == prompt and file.ui == ui


def test_convert_prints_the_frontends_prompt_with_a_given_or_the_masters_nodes(
    sim_factory: Callable[..., SimInstance], tmp_path: Path
) -> None:
    case = CASES / "c06_bypass_type_matching"
    done = comfy_fleet(
        "workflow",
        "convert",
        str(case / "ui.json"),
        "--object-info",
        str(CASES / "object_info.json"),
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == read(case / "api.json")
    master = sim_factory("master")  # the simulator's /object_info is the recorded one
    config = master_config(tmp_path, master)
    done = comfy_fleet(
        "workflow", "convert", str(CASES / "c12_subgraph_basic" / "ui.json"), config=config
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == read(CASES / "c12_subgraph_basic" / "api.json")
    done = comfy_fleet("workflow", "convert", str(PNG_CASE / "image.png"), config=config)
    assert json.loads(done.stdout) == read(PNG_CASE / "api.json")  # the image's own prompt


def test_convert_names_the_missing_node_and_its_pack(tmp_path: Path) -> None:
    ui = read(CASES / "t01_default_txt2img" / "ui.json")
    node = next(n for n in ui["nodes"] if n["type"] == "SaveImage")
    node["type"], node["properties"] = "Image Saver", {"aux_id": "alexopus/ComfyUI-Image-Saver"}
    path = tmp_path / "custom.json"
    path.write_text(json.dumps(ui))
    done = comfy_fleet(
        "workflow", "convert", str(path), "--object-info", str(CASES / "object_info.json")
    )
    assert done.returncode == 1 and done.stdout == ""
    assert (
        f"node {node['id']} (Image Saver): this master has no such node; install the custom-node "
        "pack “alexopus/ComfyUI-Image-Saver” on it"
    ) in done.stderr
    assert "Traceback" not in done.stderr


def test_run_takes_a_ui_format_template_and_makes_its_image(
    sim_factory: Callable[..., SimInstance], tmp_path: Path
) -> None:
    master = sim_factory("master", env={"COMFYFLEET_SIM_MODELS": SD15})
    config = master_config(tmp_path, master)
    template = CASES / "t01_default_txt2img" / "ui.json"
    done = comfy_fleet(
        "run", str(template), "--out", str(tmp_path / "out"), "--json", config=config, timeout=120
    )
    assert done.returncode == 0, done.stderr
    outputs = json.loads(done.stdout)["outputs"]
    assert len(outputs) == 1 and Path(outputs[0]["saved"]).is_file()
    history = http_json(f"{master.url}/history")
    (entry,) = history.values()
    assert entry["prompt"][2] == read(CASES / "t01_default_txt2img" / "api.json")
