"""The simulator against the recordings of real ComfyUI 0.3.64 + ComfyUI-Distributed 1.4.4.

Same keys, same types, same event order; values may differ. If these fail, the simulator has
drifted from real ComfyUI (or the recordings were renewed): fix the simulator, not the test.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from app.sim.fleet import SimInstance
from tests.conftest import RECORDINGS
from tests.integration.sim_client import (
    get_json,
    listen,
    post_json,
    recorded_http,
    recorded_ws,
    types,
    workflow,
)
from tests.integration.test_sim_distributed import register

pytestmark = pytest.mark.comfyui("0.3.64")  # against that version's recordings

RUNS = ["cpu", "gpu-h200"]


def shape_differences(recorded: Any, simulated: Any, path: str = "$") -> list[str]:
    """Where the two differ in keys or JSON types (values are free to differ)."""
    if isinstance(recorded, dict):
        if not isinstance(simulated, dict):
            return [f"{path}: expected an object, got {type(simulated).__name__}"]
        return _dict_differences(recorded, simulated, path)
    if isinstance(recorded, list):
        if not isinstance(simulated, list):
            return [f"{path}: expected a list, got {type(simulated).__name__}"]
        if recorded and simulated:
            return shape_differences(recorded[0], simulated[0], f"{path}[0]")
        return []
    if recorded is None or simulated is None:
        return []  # nullable fields (index on CPU, pid, runpod_pod_id …)
    expected = next(k for k in (bool, int, float, str) if isinstance(recorded, k))
    if expected is float and isinstance(simulated, int) and not isinstance(simulated, bool):
        return []
    if not isinstance(simulated, expected) or (expected is int and isinstance(simulated, bool)):
        return [f"{path}: expected {expected.__name__}, got {type(simulated).__name__}"]
    return []


def _dict_differences(recorded: dict[str, Any], simulated: dict[str, Any], path: str) -> list[str]:
    if _keyed_by_id(recorded) and _keyed_by_id(simulated):  # e.g. progress_state nodes
        first = next(iter(simulated.values()))
        return shape_differences(next(iter(recorded.values())), first, f"{path}.*")
    problems = [f"{path}: missing key {k!r}" for k in recorded if k not in simulated]
    problems += [f"{path}: extra key {k!r}" for k in simulated if k not in recorded]
    for key in recorded:
        if key in simulated:
            problems += shape_differences(recorded[key], simulated[key], f"{path}.{key}")
    return problems


def _keyed_by_id(mapping: dict[str, Any]) -> bool:
    return bool(mapping) and all(key.isdigit() for key in mapping)


def test_shape_check_can_fail() -> None:
    assert shape_differences({"a": 1, "b": [{"c": "x"}]}, {"a": "1", "b": [{"d": 1}]}) == [
        "$.a: expected int, got str",
        "$.b[0]: missing key 'c'",
        "$.b[0]: extra key 'd'",
    ]


@pytest.mark.asyncio
@pytest.mark.parametrize("run", RUNS)
async def test_initial_get_routes_have_the_recorded_shape(sim: SimInstance, run: str) -> None:
    recorded = recorded_http(run)
    routes = [
        "/system_stats",
        "/queue",
        "/prompt",
        "/features",
        "/models",
        "/embeddings",
        "/extensions",
        "/distributed/config",
        "/distributed/system_info",
        "/distributed/network_info",
    ]
    async with aiohttp.ClientSession() as session:
        for route in routes:
            exchange = recorded[f"initial:master:GET {route}"]
            body = await get_json(session, f"{sim.url}{route}")
            assert shape_differences(exchange["body"], body) == [], route
        save_image = await get_json(session, f"{sim.url}/object_info/SaveImage")
        assert save_image == recorded["initial:master:GET /object_info/SaveImage"]["body"]
        catalogue = await get_json(session, f"{sim.url}/object_info")
    real = json.loads((RECORDINGS / "cpu" / "object_info.json").read_text())
    assert sorted(catalogue) == sorted(real)


@pytest.mark.asyncio
async def test_distributed_config_and_free_routes_match(sim: SimInstance) -> None:
    recorded = recorded_http()
    async with aiohttp.ClientSession() as session:
        exchange = recorded["register:master:POST /distributed/config/update_worker"]
        body = dict(exchange["request_body"])
        status, answer = await post_json(
            session, f"{sim.url}/distributed/config/update_worker", body
        )
        assert (status, answer) == (exchange["status"], exchange["body"])
        config = await get_json(session, f"{sim.url}/distributed/config")
        assert config == recorded["register:master:GET /distributed/config"]["body"]
        async with session.post(
            f"{sim.url}/free", json={"unload_models": True, "free_memory": True}
        ) as response:
            assert (response.status, await response.read()) == (200, b"")
        status, cleared = await post_json(session, f"{sim.url}/distributed/clear_memory", {})
        assert cleared == recorded["free:master:POST /distributed/clear_memory"]["body"]
        log = await get_json(session, f"{sim.url}/distributed/local_log?lines=300")
        expected = recorded["after_jobs:master:GET /distributed/local_log?lines=300"]["body"]
        assert shape_differences(expected, log) == []


def _recorded_sequence(run: str, name: str, side: str) -> list[dict[str, Any]]:
    return next(s for s in recorded_ws(run) if s["name"] == name and s["side"] == side)["messages"]


def _assert_same_events(
    recorded: list[dict[str, Any]], simulated: list[dict[str, Any]], label: str
) -> None:
    assert types(simulated) == types(recorded), label
    seen: set[str] = set()
    for real, ours in zip(recorded, simulated, strict=True):
        if real["type"] in seen:
            continue
        seen.add(real["type"])
        assert shape_differences(real["data"], ours["data"]) == [], f"{label} {real['type']}"


async def _run(
    session: aiohttp.ClientSession, sim: SimInstance, graph: dict[str, Any], client_id: str
) -> tuple[str, list[dict[str, Any]]]:
    async with listen(session, sim.url, client_id) as ws:
        _, body = await post_json(
            session, f"{sim.url}/prompt", {"prompt": graph, "client_id": client_id}
        )
        return body["prompt_id"], await ws.finished(body["prompt_id"])


@pytest.mark.asyncio
@pytest.mark.parametrize("run", RUNS)
async def test_event_order_and_history_match_the_recordings(
    sim: SimInstance, sim_factory: Callable[..., SimInstance], run: str
) -> None:
    http = recorded_http(run)
    worker = sim_factory("worker")
    register(sim, "1", "worker-8189", worker.port)
    async with aiohttp.ClientSession() as session:
        for seed, name in ((1000, "nomodel_run1"), (1001, "nomodel_run2")):
            graph = workflow("workflow_nomodel")
            graph["2"]["inputs"]["seed"] = seed
            prompt_id, events = await _run(session, sim, graph, name)
            _assert_same_events(_recorded_sequence(run, name, "master"), events, name)
            if name == "nomodel_run1":
                history = await get_json(session, f"{sim.url}/history/{prompt_id}")
                real = http["jobs:master:GET /history/<pid> (nomodel_run1)"]["body"]
                ours = history[prompt_id]
                assert shape_differences(next(iter(real.values())), ours) == []
        _, events = await _run(session, sim, workflow("workflow_progress"), "progress")
        _assert_same_events(
            _recorded_sequence(run, "progress_master", "master"), events, "progress"
        )
        for seed, name in ((1234, "dist_run1"), (2234, "dist_run2")):
            graph = workflow("workflow_distributed_nomodel")
            graph["10"]["inputs"]["seed"] = seed
            async with (
                listen(session, sim.url, name) as master_ws,
                listen(session, worker.url, name) as worker_ws,
            ):
                status, body = await post_json(
                    session,
                    f"{sim.url}/distributed/queue",
                    {
                        "prompt": graph,
                        "client_id": name,
                        "enabled_worker_ids": ["1"],
                        "delegate_master": False,
                    },
                )
                assert (
                    shape_differences(
                        http[f"jobs:master:POST /distributed/queue ({name})"]["body"], body
                    )
                    == []
                )
                master_events = await master_ws.finished(body["prompt_id"])
                start = await worker_ws.until("execution_start")
                worker_events = worker_ws.events[1:]
                worker_events += await worker_ws.finished(start["data"]["prompt_id"])
            _assert_same_events(_recorded_sequence(run, name, "master"), master_events, name)
            _assert_same_events(
                _recorded_sequence(run, name, "worker"), worker_events, f"{name} worker"
            )
            history = await get_json(session, f"{sim.url}/history/{body['prompt_id']}")
            real = http[f"jobs:master:GET /history/<pid> ({name})"]["body"]
            assert shape_differences(next(iter(real.values())), history[body["prompt_id"]]) == []
        _, events = await _run(session, sim, workflow("workflow_runtime_error"), "error")
        _assert_same_events(
            _recorded_sequence(run, "runtime_error", "master"), events, "runtime_error"
        )


def recorded_model_inputs() -> dict[tuple[str, str], str]:
    """Which folder each loader input lists, as the recordings show it: the models a shipped
    template declares (file → folder) are the values of those inputs in the real prompts."""
    found: dict[tuple[str, str], str] = {}
    for case in sorted((RECORDINGS / "ui_workflows").glob("t*/ui.json")):
        ui = json.loads(case.read_text())
        nodes = ui["nodes"] + [
            n for sub in (ui.get("definitions") or {}).get("subgraphs", []) for n in sub["nodes"]
        ]
        models = list(ui.get("models") or []) + [
            m for n in nodes for m in (n.get("properties") or {}).get("models") or []
        ]
        folders = {m["name"]: m["directory"] for m in models}
        prompt = json.loads(case.with_name("api.json").read_text())
        for node in prompt.values():
            for name, value in node["inputs"].items():
                if isinstance(value, str) and value in folders:
                    found[(node["class_type"], name)] = folders[value]
    upscale = json.loads((RECORDINGS / "cpu" / "object_info.json").read_text())[
        "UpscaleModelLoader"
    ]
    assert "tiny_compact_x2.safetensors" in upscale["input"]["required"]["model_name"][1]["options"]
    found[("UpscaleModelLoader", "model_name")] = "upscale_models"
    return found


def test_model_folders_are_the_recorded_ones() -> None:
    from app.sim.catalogue import MODEL_INPUTS

    assert recorded_model_inputs() == MODEL_INPUTS


@pytest.mark.asyncio
async def test_model_lists_are_this_instances_files_and_the_recorded_specials(
    sim_factory: Callable[..., SimInstance],
) -> None:
    models = {"vae": ["mine.safetensors"], "upscale_models": []}
    sim = sim_factory("models", env={"COMFYFLEET_SIM_MODELS": json.dumps(models)})
    async with aiohttp.ClientSession() as session:
        vae = await get_json(session, f"{sim.url}/object_info/VAELoader")
        upscale = await get_json(session, f"{sim.url}/object_info/UpscaleModelLoader")
    assert vae["VAELoader"]["input"]["required"]["vae_name"][0] == [
        "mine.safetensors",
        "pixel_space",
    ]
    assert upscale["UpscaleModelLoader"]["input"]["required"]["model_name"][1]["options"] == []


@pytest.mark.asyncio
async def test_log_routes_and_events_match_the_recordings(sim: SimInstance) -> None:
    recorded = json.loads((RECORDINGS / "cpu" / "logs_api.json").read_text())
    async with aiohttp.ClientSession() as session:
        raw = await get_json(session, f"{sim.url}/internal/logs/raw")
        assert shape_differences(recorded["GET /internal/logs/raw"]["body"], raw) == []
        assert any("To see the GUI go to" in e["m"] for e in raw["entries"])
        joined = await get_json(session, f"{sim.url}/internal/logs")
        assert isinstance(joined, str) and " - To see the GUI go to" in joined
        local = await get_json(session, f"{sim.url}/distributed/local_log?lines=5")
        assert set(local) >= {"status", "content"}
        async with session.get(f"{sim.url}/api/internal/logs/raw") as response:
            assert response.status == recorded["GET /api/internal/logs/raw"]["status"]
        socket = await session.ws_connect(f"{sim.url}/ws?clientId=logs-1")
        assert (await socket.receive_json())["type"] == "status"
        async with session.patch(
            f"{sim.url}/internal/logs/subscribe", json={"clientId": "logs-1", "enabled": True}
        ) as response:
            assert (response.status, await response.text()) == (200, "")
        status, _ = await post_json(
            session,
            f"{sim.url}/prompt",
            {"prompt": workflow("workflow_nomodel"), "client_id": "other"},
        )
        assert status == 200
        logs = []
        while len(logs) < 2:
            event = await socket.receive_json(timeout=10)
            if event["type"] == "logs":
                logs.append(event)
        await socket.close()
    recorded_logs = [
        e
        for e in recorded["ws events after subscribe (first is the status on connect)"]
        if e["type"] == "logs"
    ]
    assert shape_differences(recorded_logs[0], logs[0]) == []
    assert [e["data"]["entries"][0]["m"] for e in logs] == [
        "got prompt\n",
        logs[1]["data"]["entries"][0]["m"],
    ]
    assert logs[1]["data"]["entries"][0]["m"].startswith("Prompt executed in")


@pytest.mark.asyncio
async def test_a_cyclic_prompt_is_refused_as_comfyui_refuses_it(sim: SimInstance) -> None:
    """Not a recording: read from ComfyUI 0.3.64's execution.py (validate_inputs recurses along
    links; in a cycle Python's RecursionError is caught as an inner validation error and then
    overwritten by the outer calls for the same nodes, so the output fails with no reason).
    The simulator accepted such a prompt and dropped it: no queue entry, no history."""
    cycle = {
        "1": {"class_type": "ImageInvert", "inputs": {"image": ["2", 0]}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "c"}},
    }
    async with aiohttp.ClientSession() as session:
        status, answer = await post_json(session, f"{sim.url}/prompt", {"prompt": cycle})
        assert status == 400
        assert answer == {
            "error": {
                "type": "prompt_outputs_failed_validation",
                "message": "Prompt outputs failed validation",
                "details": "",
                "extra_info": {},
            },
            "node_errors": {},
        }
        queue = await get_json(session, f"{sim.url}/queue")
        assert queue == {"queue_running": [], "queue_pending": []}
