"""ComfyUI-Distributed on the simulator: config routes, a real multi-process run, skipping."""

from __future__ import annotations

import json
from collections.abc import Callable

import aiohttp
import pytest

from app.sim.fleet import SimInstance, free_port, http_json
from app.sim.images import decode_png
from tests.integration.sim_client import (
    download,
    get_json,
    listen,
    post_json,
    recorded_http,
    types,
    workflow,
)

pytestmark = pytest.mark.asyncio


def register(
    master: SimInstance, worker_id: str, name: str, port: int, kind: str = "local"
) -> None:
    answer = http_json(
        f"{master.url}/distributed/config/update_worker",
        {
            "worker_id": worker_id,
            "name": name,
            "host": "127.0.0.1",
            "port": port,
            "cuda_device": None,
            "enabled": True,
            "type": kind,
        },
    )
    assert answer == {"status": "success"}


async def run_distributed(
    master: SimInstance, worker_ids: list[str], seed: int = 1234, client_id: str = "dist"
) -> tuple[dict, list, dict]:
    graph = workflow("workflow_distributed_nomodel")
    graph["10"]["inputs"]["seed"] = seed
    async with aiohttp.ClientSession() as session, listen(session, master.url, client_id) as ws:
        status, body = await post_json(
            session,
            f"{master.url}/distributed/queue",
            {
                "prompt": graph,
                "client_id": client_id,
                "enabled_worker_ids": worker_ids,
                "delegate_master": False,
            },
        )
        assert status == 200, body
        events = await ws.finished(body["prompt_id"], timeout=60)
        history = await get_json(session, f"{master.url}/history/{body['prompt_id']}")
        made = []
        for image in history[body["prompt_id"]]["outputs"].get("4", {}).get("images", []):
            made.append(decode_png(await download(session, master.url, image)))
    return body, events, {"images": made}


async def test_two_workers_each_deliver_one_image(
    sim: SimInstance, sim_factory: Callable[..., SimInstance]
) -> None:
    workers = [sim_factory(f"w{i}", args=["--sim-name", f"w{i}"]) for i in (1, 2)]
    for number, worker in enumerate(workers, 1):
        register(sim, str(number), f"w{number}", worker.port)
    body, events, result = await run_distributed(sim, ["1", "2"])
    assert body["worker_count"] == 2
    assert set(body) == {
        "prompt_id",
        "number",
        "node_errors",
        "worker_count",
        "auto_prepare_supported",
    }
    assert [(i.maker, i.seed) for i in result["images"]] == [
        ("master", 1234),
        ("w1", 1235),
        ("w2", 1236),
    ]
    assert len({i.pixels for i in result["images"]}) == 3
    assert "execution_success" in types(events)
    for number, worker in enumerate(workers, 1):
        history = http_json(f"{worker.url}/history")
        (entry,) = history.values()
        prompt = entry["prompt"][2]
        collector = prompt["3"]["inputs"]
        assert collector["is_worker"] is True and collector["worker_id"] == str(number)
        assert collector["master_url"] == f"http://127.0.0.1:{sim.port}"
        assert prompt["10"]["inputs"]["worker_id"] == f"worker_{number - 1}"
        assert "4" not in prompt  # SaveImage pruned on workers
        assert prompt["11"]["class_type"] == "PreviewImage"


async def test_worker_sees_the_same_client_id_events(
    sim: SimInstance, sim_factory: Callable[..., SimInstance]
) -> None:
    worker = sim_factory("w1")
    register(sim, "1", "w1", worker.port)
    async with aiohttp.ClientSession() as session, listen(session, worker.url, "shared") as ws:
        body, _, _ = await run_distributed(sim, ["1"], client_id="shared")
        start = await ws.until("execution_start")
        await ws.finished(start["data"]["prompt_id"])
    assert "executed" in types(ws.events)


async def test_offline_and_disabled_workers_are_skipped(
    sim: SimInstance, sim_factory: Callable[..., SimInstance]
) -> None:
    worker = sim_factory("w1", args=["--sim-name", "w1"])
    register(sim, "1", "w1", worker.port)
    register(sim, "2", "gone", free_port())
    register(sim, "3", "off", worker.port)
    http_json(f"{sim.url}/distributed/config/update_worker", {"worker_id": "3", "enabled": False})
    body, _, result = await run_distributed(sim, ["1", "2", "3"])
    assert body["worker_count"] == 1
    assert [i.maker for i in result["images"]] == ["master", "w1"]
    log = http_json(f"{sim.url}/distributed/local_log?lines=50")["content"]
    assert "Worker gone is offline, skipping" in log


async def test_queue_errors_have_the_recorded_shapes(sim: SimInstance) -> None:
    recorded = recorded_http()
    async with aiohttp.ClientSession() as session:
        for name in (
            "invalid:master:POST /distributed/queue (validation errors)",
            "invalid:master:POST /distributed/queue (no enabled_worker_ids)",
        ):
            exchange = recorded[name]
            status, body = await post_json(
                session, f"{sim.url}/distributed/queue", exchange["request_body"]
            )
            assert (status, body) == (exchange["status"], exchange["body"]), name
        status, body = await post_json(
            session, f"{sim.url}/distributed/queue", {"prompt": {}, "enabled_worker_ids": []}
        )
        assert (status, body) == (400, {"error": "client_id required"})


async def test_config_routes_persist_in_gpu_config(
    sim: SimInstance, sim_factory: Callable[..., SimInstance]
) -> None:
    path = sim.log_path.parent / "custom_nodes" / "ComfyUI-Distributed" / "gpu_config.json"
    missing = recorded_http()["initial:master:GET /distributed/config"]["body"]
    assert http_json(f"{sim.url}/distributed/config") == missing
    register(sim, "7", "box", 8189, kind="remote")
    with pytest.raises(Exception, match="404"):
        http_json(f"{sim.url}/distributed/config/update_worker", {"worker_id": "8", "name": "x"})
    http_json(
        f"{sim.url}/distributed/config/update_worker",
        {"worker_id": "7", "extra_args": "--lowvram", "cuda_device": None},
    )
    http_json(f"{sim.url}/distributed/config/update_master", {"host": "abc.trycloudflare.com"})
    http_json(
        f"{sim.url}/distributed/config/update_setting",
        {"key": "worker_timeout_seconds", "value": 5},
    )
    saved = json.loads(path.read_text())
    assert saved["master"]["host"] == "abc.trycloudflare.com"
    assert saved["workers"] == [
        {
            "id": "7",
            "enabled": True,
            "extra_args": "--lowvram",
            "name": "box",
            "host": "127.0.0.1",
            "port": 8189,
            "type": "remote",
        }
    ]
    assert saved["settings"]["worker_timeout_seconds"] == 5
    http_json(f"{sim.url}/distributed/config/delete_worker", {"worker_id": "7"})
    sim.stop()
    again = sim_factory("master")  # same folder: reads the file back
    assert http_json(f"{again.url}/distributed/config")["workers"] == []
    assert http_json(f"{again.url}/distributed/config")["master"]["host"] == "abc.trycloudflare.com"


async def test_remote_workers_call_back_to_the_master_host(
    sim: SimInstance, sim_factory: Callable[..., SimInstance]
) -> None:
    worker = sim_factory("w1")
    register(sim, "1", "w1", worker.port, kind="remote")
    http_json(f"{sim.url}/distributed/config/update_master", {"host": "127.0.0.1"})
    body, _, result = await run_distributed(sim, ["1"])
    assert body["worker_count"] == 1 and len(result["images"]) == 2
    prompt = next(iter(http_json(f"{worker.url}/history").values()))["prompt"][2]
    assert prompt["3"]["inputs"]["master_url"] == f"http://127.0.0.1:{sim.port}"


async def test_info_and_memory_routes(sim: SimInstance) -> None:
    recorded = recorded_http()
    info = http_json(f"{sim.url}/distributed/system_info")
    assert set(info) == set(recorded["initial:master:GET /distributed/system_info"]["body"])
    cleared = http_json(f"{sim.url}/distributed/clear_memory", {})
    assert cleared == {"status": "success", "message": "GPU memory cleared."}
    log = http_json(f"{sim.url}/distributed/local_log?lines=5")
    assert log["status"] == "success" and "To see the GUI go to" in log["content"]


async def test_without_the_extension_distributed_routes_are_404(
    sim_factory: Callable[..., SimInstance],
) -> None:
    bare = sim_factory("bare", args=["--sim-no-distributed"])
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{bare.url}/distributed/system_info") as response:
            assert response.status == 404
        assert await get_json(session, f"{bare.url}/extensions") == []
