"""A real client against `python -m app.sim`: jobs, events, history, files, queue, VRAM."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiohttp
import psutil
import pytest

from app.sim.fleet import SimInstance
from app.sim.images import decode_png
from tests.integration.sim_client import (
    download,
    get_json,
    listen,
    post_json,
    types,
    workflow,
)

pytestmark = pytest.mark.asyncio


async def test_client_flow_nomodel_workflow(sim: SimInstance) -> None:
    async with aiohttp.ClientSession() as session, listen(session, sim.url, "flow") as ws:
        status, body = await post_json(
            session,
            f"{sim.url}/prompt",
            {"prompt": workflow("workflow_nomodel"), "client_id": "flow"},
        )
        assert status == 200 and set(body) == {"prompt_id", "number", "node_errors"}
        events = await ws.finished(body["prompt_id"])
        assert types(events, skip=("progress_state",)) == [
            "status",
            "status",
            "execution_start",
            "execution_cached",
            "executing",
            "executing",
            "executing",
            "executing",
            "executed",
            "execution_success",
            "status",
            "executing",
        ]
        history = await get_json(session, f"{sim.url}/history/{body['prompt_id']}")
        entry = history[body["prompt_id"]]
        assert entry["status"]["status_str"] == "success" and entry["status"]["completed"]
        image = entry["outputs"]["4"]["images"][0]
        saved = {"filename": "nomodel_00001_.png", "subfolder": "", "type": "output"}
        assert image.items() >= saved.items()  # (0.38 adds its asset ids)
        png = await download(session, sim.url, image)
        decoded = decode_png(png)
        assert (decoded.width, decoded.height) == (512, 512)
        assert decoded.maker == "master" and decoded.seed == 42


async def test_pixels_depend_on_the_seed(sim: SimInstance) -> None:
    pixels = []
    async with aiohttp.ClientSession() as session, listen(session, sim.url, "seeds") as ws:
        for seed in (1, 2, 1):
            graph = workflow("workflow_nomodel")
            graph["2"]["inputs"]["seed"] = seed
            graph["4"]["inputs"]["filename_prefix"] = f"seed{seed}"
            _, body = await post_json(
                session, f"{sim.url}/prompt", {"prompt": graph, "client_id": "seeds"}
            )
            await ws.finished(body["prompt_id"])
            entry = await get_json(session, f"{sim.url}/history/{body['prompt_id']}")
            image = entry[body["prompt_id"]]["outputs"]["4"]["images"][0]
            pixels.append(decode_png(await download(session, sim.url, image)).pixels)
    assert pixels[0] != pixels[1]
    assert pixels[0] == pixels[2]


async def test_identical_resubmission_is_fully_cached(sim: SimInstance) -> None:
    async with aiohttp.ClientSession() as session, listen(session, sim.url, "cache") as ws:
        first = second = None
        for _ in range(2):
            _, body = await post_json(
                session,
                f"{sim.url}/prompt",
                {"prompt": workflow("workflow_nomodel"), "client_id": "cache"},
            )
            events = await ws.finished(body["prompt_id"])
            first, second = second, events
        assert first is not None and second is not None
    cached = next(e for e in second if e["type"] == "execution_cached")
    assert cached["data"]["nodes"] == ["1", "2", "3", "4"]
    assert [e for e in second if e["type"] == "executing" and e["data"]["node"]] == []
    replayed = [e["data"]["output"] for e in second if e["type"] == "executed"]
    original = [e["data"]["output"] for e in first if e["type"] == "executed"]
    assert replayed == original


async def test_events_reach_only_the_submitting_client(sim: SimInstance) -> None:
    async with (
        aiohttp.ClientSession() as session,
        listen(session, sim.url, "mine") as mine,
        listen(session, sim.url, "other") as other,
    ):
        _, body = await post_json(
            session,
            f"{sim.url}/prompt",
            {"prompt": workflow("workflow_nomodel"), "client_id": "mine"},
        )
        await mine.finished(body["prompt_id"])
        with pytest.raises(TimeoutError):
            await other.until("execution_start", timeout=0.5)
        assert set(types(other.events)) == {"status"}  # status is broadcast, the rest is not


async def test_progress_events_for_multi_step_nodes(sim: SimInstance) -> None:
    async with aiohttp.ClientSession() as session, listen(session, sim.url, "prog") as ws:
        _, body = await post_json(
            session,
            f"{sim.url}/prompt",
            {"prompt": workflow("workflow_progress"), "client_id": "prog"},
        )
        events = await ws.finished(body["prompt_id"])
    progress = [e["data"] for e in events if e["type"] == "progress"]
    assert [(p["value"], p["max"], p["node"]) for p in progress] == [
        (i, 9, "6") for i in range(1, 10)
    ]


async def test_runtime_error_is_reported_and_recorded(sim: SimInstance) -> None:
    async with aiohttp.ClientSession() as session, listen(session, sim.url, "err") as ws:
        _, body = await post_json(
            session,
            f"{sim.url}/prompt",
            {"prompt": workflow("workflow_runtime_error"), "client_id": "err"},
        )
        events = await ws.finished(body["prompt_id"])
        error = next(e["data"] for e in events if e["type"] == "execution_error")
        assert (error["node_id"], error["node_type"], error["exception_type"]) == (
            "2",
            "ImageBlur",
            "RuntimeError",
        )
        assert error["executed"] == ["1"]
        assert "execution_success" not in types(events)
        entry = (await get_json(session, f"{sim.url}/history/{body['prompt_id']}"))[
            body["prompt_id"]
        ]
    assert entry["status"]["status_str"] == "error"
    assert [m[0] for m in entry["status"]["messages"]] == [
        "execution_start",
        "execution_cached",
        "execution_error",
    ]


async def test_interrupt_stops_the_running_job(sim_factory: Callable[..., SimInstance]) -> None:
    slow = sim_factory("slow", args=["--sim-time-scale", "20"])
    async with aiohttp.ClientSession() as session, listen(session, slow.url, "int") as ws:
        _, body = await post_json(
            session,
            f"{slow.url}/prompt",
            {"prompt": workflow("workflow_progress"), "client_id": "int"},
        )
        await ws.until("progress", body["prompt_id"])
        status, _ = await post_json(session, f"{slow.url}/interrupt", {"prompt_id": "not-running"})
        assert status == 200
        await post_json(session, f"{slow.url}/interrupt", {})
        events = await ws.finished(body["prompt_id"])
        interrupted = next(e["data"] for e in events if e["type"] == "execution_interrupted")
        assert interrupted["node_id"] == "6" and interrupted["node_type"] == "ImageUpscaleWithModel"
        progress = [e for e in ws.events if e["type"] == "progress"]
        assert len(progress) < 9
        history = await get_json(session, f"{slow.url}/history/{body['prompt_id']}")
        assert history[body["prompt_id"]]["status"]["status_str"] == "error"


async def test_queue_runs_in_order_and_can_be_edited(
    sim_factory: Callable[..., SimInstance],
) -> None:
    slow = sim_factory("queue", args=["--sim-time-scale", "20"])
    async with aiohttp.ClientSession() as session, listen(session, slow.url, "q") as ws:
        ids = []
        for seed in range(4):
            graph = workflow("workflow_nomodel")
            graph["2"]["inputs"]["seed"] = seed
            _, body = await post_json(
                session, f"{slow.url}/prompt", {"prompt": graph, "client_id": "q"}
            )
            ids.append(body["prompt_id"])
        queue = await get_json(session, f"{slow.url}/api/queue")
        assert [item[1] for item in queue["queue_running"]] == ids[:1]
        assert [item[1] for item in queue["queue_pending"]] == ids[1:]
        assert len(queue["queue_pending"][0]) >= 5
        assert (await get_json(session, f"{slow.url}/prompt"))["exec_info"]["queue_remaining"] == 4
        await post_json(session, f"{slow.url}/queue", {"delete": [ids[2]]})
        queue = await get_json(session, f"{slow.url}/queue")
        assert [item[1] for item in queue["queue_pending"]] == [ids[1], ids[3]]
        await post_json(session, f"{slow.url}/queue", {"clear": True})
        assert (await get_json(session, f"{slow.url}/queue"))["queue_pending"] == []
        await post_json(session, f"{slow.url}/interrupt", {})
        await ws.finished(ids[0])
        history = await get_json(session, f"{slow.url}/history?max_items=10")
        assert list(history) == [ids[0]]


async def test_vram_drops_while_running_and_after_load_rises_on_free(
    sim_factory: Callable[..., SimInstance],
) -> None:
    instance = sim_factory(
        "vram",
        args=[
            "--sim-time-scale",
            "2",
            "--sim-vram-gb",
            "48",
            "--sim-device",
            "NVIDIA RTX 6000 Ada",
        ],
    )

    async def free_vram(session: aiohttp.ClientSession) -> int:
        stats = await get_json(session, f"{instance.url}/system_stats")
        device = stats["devices"][0]
        assert device["vram_total"] == 48 * 1024**3
        assert device["name"] == "cuda:0 NVIDIA RTX 6000 Ada : cudaMallocAsync"
        return int(device["vram_free"])

    async with aiohttp.ClientSession() as session, listen(session, instance.url, "v") as ws:
        idle = await free_vram(session)
        graph = workflow("workflow_progress")
        graph["4"]["inputs"]["filename_prefix"] = "vram"
        _, body = await post_json(
            session, f"{instance.url}/prompt", {"prompt": graph, "client_id": "v"}
        )
        await ws.until("progress", body["prompt_id"])
        running = await free_vram(session)
        await ws.finished(body["prompt_id"])
        loaded = await free_vram(session)
        status, _ = await post_json(
            session, f"{instance.url}/free", {"unload_models": True, "free_memory": True}
        )
        freed = await free_vram(session)
    assert status == 200
    assert running < loaded < idle
    assert freed == idle


@pytest.mark.comfyui("0.3.64")  # (0.38's: test_sim_038_fidelity.py)
async def test_validation_errors_match_the_recorded_answers(
    sim: SimInstance, recordings: object
) -> None:
    from tests.integration.sim_client import recorded_http

    recorded = recorded_http()
    async with aiohttp.ClientSession() as session:
        for name in (
            "invalid:master:POST /prompt (validation errors)",
            "invalid:master:POST /prompt (unknown node)",
        ):
            exchange = recorded[name]
            status, body = await post_json(session, f"{sim.url}/prompt", exchange["request_body"])
            assert status == exchange["status"] == 400
            assert body == exchange["body"], name
        async with session.post(f"{sim.url}/prompt", data=b"not json") as response:
            assert response.status == 500
            assert response.content_type == "text/plain"
            assert (
                await response.text()
                == recorded["invalid:master:POST /prompt (body not JSON)"]["body"]
            )
        status, body = await post_json(session, f"{sim.url}/prompt", {"client_id": "x"})
        assert status == 400 and body["error"]["type"] == "no_prompt"
        graph = {
            "1": {
                "class_type": "EmptyImage",
                "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0},
            }
        }
        status, body = await post_json(session, f"{sim.url}/prompt", {"prompt": graph})
        assert status == 400 and body["error"]["type"] == "prompt_no_outputs"


async def test_missing_model_is_value_not_in_list(sim: SimInstance) -> None:
    graph = workflow("workflow_progress")
    graph["5"]["inputs"]["model_name"] = "4x_NotInstalled.pth"
    async with aiohttp.ClientSession() as session:
        status, body = await post_json(session, f"{sim.url}/prompt", {"prompt": graph})
        catalogue = await get_json(session, f"{sim.url}/object_info/UpscaleModelLoader")
        models = await get_json(session, f"{sim.url}/models/upscale_models")
        folders = await get_json(session, f"{sim.url}/models")
    assert status == 400
    error = body["node_errors"]["5"]["errors"][0]
    assert (
        error["type"] == "value_not_in_list" and error["extra_info"]["input_name"] == "model_name"
    )
    options = catalogue["UpscaleModelLoader"]["input"]["required"]["model_name"][1]["options"]
    assert options == models == ["tiny_compact_x2.safetensors"]
    assert "checkpoints" in folders


async def test_configured_models_and_checkpoint_lists(
    sim_factory: Callable[..., SimInstance],
) -> None:
    instance = sim_factory(
        "models", env={"COMFYFLEET_SIM_MODELS": '{"checkpoints": ["flux1-dev.safetensors"]}'}
    )
    async with aiohttp.ClientSession() as session:
        assert await get_json(session, f"{instance.url}/models/checkpoints") == [
            "flux1-dev.safetensors"
        ]
        info = await get_json(session, f"{instance.url}/object_info/CheckpointLoaderSimple")
        assert info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0] == [
            "flux1-dev.safetensors"
        ]
        assert await get_json(session, f"{instance.url}/object_info/NoSuchNode") == {}
        async with session.get(f"{instance.url}/models/nonsense") as response:
            assert response.status == 404


async def test_view_refuses_missing_and_escaping_files(sim: SimInstance) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{sim.url}/view", params={"filename": "nope.png"}) as response:
            assert response.status == 404
        params = {"filename": "../../etc/passwd", "type": "output"}
        async with session.get(f"{sim.url}/view", params=params) as response:
            assert response.status == 403


async def test_upload_image_and_view_it(sim: SimInstance) -> None:
    png = b"\x89PNG\r\n\x1a\nfake"
    async with aiohttp.ClientSession() as session:
        names = []
        for _ in range(2):
            form = aiohttp.FormData()
            form.add_field("image", png, filename="in.png", content_type="image/png")
            async with session.post(f"{sim.url}/upload/image", data=form) as response:
                names.append(await response.json())
        assert names == [
            {"name": "in.png", "subfolder": "", "type": "input"},
            {"name": "in (1).png", "subfolder": "", "type": "input"},
        ]
        async with session.get(
            f"{sim.url}/view", params={"filename": "in.png", "type": "input"}
        ) as r:
            assert await r.read() == png


async def test_api_prefix_features_and_cors_only_when_asked(
    sim: SimInstance, sim_factory: Callable[..., SimInstance]
) -> None:
    plain = sim_factory("nocors", cors=False)
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{plain.url}/features") as response:
            assert response.status == 200
            assert "Access-Control-Allow-Origin" not in response.headers
        async with session.get(f"{sim.url}/api/features") as response:
            assert await response.json() == {
                "supports_preview_metadata": True,
                "max_upload_size": 104857600,
            }
            assert response.headers["Access-Control-Allow-Origin"] == "*"
        async with session.get(f"{sim.url}/api/system_stats") as response:
            assert response.status == 200


async def test_websocket_feature_flags_handshake(sim: SimInstance) -> None:
    async with aiohttp.ClientSession() as session, listen(session, sim.url, "ff") as ws:
        await ws.socket.send_json(
            {"type": "feature_flags", "data": {"supports_preview_metadata": True}}
        )
        reply = await ws.until("feature_flags")
    assert reply["data"]["max_upload_size"] == 104857600
    assert ws.events[0]["data"]["sid"] == "ff"


async def test_argv_and_pinned_gpu_are_reported(sim_factory: Callable[..., SimInstance]) -> None:
    pinned = sim_factory(
        "pinned",
        args=["--preview-method", "auto"],
        env={"CUDA_VISIBLE_DEVICES": "GPU-9664e333-53f7-c99e"},
    )
    cpu = sim_factory("cpu", args=["--cpu"])
    async with aiohttp.ClientSession() as session:
        stats = await get_json(session, f"{pinned.url}/system_stats")
        cpu_stats = await get_json(session, f"{cpu.url}/system_stats")
    # recorded pinned by UUID, ComfyUI names the device alone: cuda:0 is the pinned GPU
    assert stats["devices"][0]["name"] == "cuda:0 NVIDIA GeForce RTX 4090 : cudaMallocAsync"
    environment = psutil.Process(pinned.process.pid).environ()
    assert environment["CUDA_VISIBLE_DEVICES"] == "GPU-9664e333-53f7-c99e"
    assert stats["system"]["argv"][-2:] == ["--preview-method", "auto"]
    assert stats["system"]["argv"][0] == "main.py"
    assert cpu_stats["devices"][0]["type"] == "cpu" and cpu_stats["devices"][0]["index"] is None


async def test_stops_cleanly_on_sigterm(sim: SimInstance) -> None:
    sim.process.terminate()
    assert await asyncio.to_thread(sim.process.wait, 10) == 0
    assert "Stopped server" in sim.log_path.read_text()
