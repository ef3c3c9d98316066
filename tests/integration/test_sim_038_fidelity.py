"""The simulator as ComfyUI 0.38 (`--sim-comfyui-version 0.38`) against recordings/comfyui-0.38/
(read from 0.38's sources: its command line rebuilt and run, its answers read). Same checks as
for 0.3.64: every recorded bad launch refused the same way, every recorded good one parsed to
the recorded values, /system_stats in the recorded shape and key order, POST /prompt's prompt_id
check with the recorded body."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from app.sim import comfy_cli
from app.sim.fleet import REPO_ROOT, SimInstance, sim_command
from tests.conftest import RECORDINGS
from tests.integration.sim_client import get_json, listen, post_json
from tests.integration.test_sim_fidelity import shape_differences

pytestmark = pytest.mark.comfyui("0.38")  # against that version's recordings

HERE = RECORDINGS / "comfyui-0.38"
VERSION = ["--sim-comfyui-version", "0.38"]


def _launches() -> dict[str, Any]:
    return dict(json.loads((HERE / "launch_errors.json").read_text(encoding="utf-8")))


def test_the_simulators_038_parser_is_the_recorded_one() -> None:
    recorded = json.loads((HERE / "cli_args.json").read_text(encoding="utf-8"))
    assert comfy_cli.recorded_parser("0.38") == recorded


@pytest.mark.parametrize(
    "case", _launches()["argparse_failures"], ids=lambda c: " ".join(c["argv_after_main_py"][2:])
)
def test_every_recorded_038_launch_error_is_refused_the_same_way(
    case: dict[str, Any], tmp_path: Path
) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "COMFYFLEET_SIM_ROOT": str(tmp_path)}
    done = subprocess.run(
        [*sim_command(), *VERSION, *case["argv_after_main_py"]],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=30,
    )
    assert done.returncode == case["exit_code"], done.stderr
    assert done.stderr.splitlines()[-1] == case["last_line"]
    assert done.stderr.startswith("usage: main.py [-h]") is case["stderr_starts_with_usage"]


@pytest.mark.parametrize(
    "case", _launches()["argparse_accepts"], ids=lambda c: " ".join(c["argv_after_main_py"][2:])
)
def test_every_recorded_038_launch_that_parses_gives_the_recorded_values(
    case: dict[str, Any],
) -> None:
    args = comfy_cli.parse(case["argv_after_main_py"], "0.38")
    shown = " ".join(
        f"{name}={getattr(args, name)!r}"
        for name in ("cuda_device", "verbose", "cache_ram", "async_offload", "offline")
    )
    shown += f" disable_partner_nodes={args.disable_partner_nodes!r}"
    assert shown == case["parsed"]


def test_0364_flags_removed_in_038_still_work_on_0364() -> None:
    assert comfy_cli.parse(["--normalvram"]).normalvram is True


@pytest.fixture
def sim038(sim_factory: Callable[..., SimInstance]) -> SimInstance:
    return sim_factory("sim038", args=[*VERSION, "--cpu"])


@pytest.mark.asyncio
async def test_system_stats_has_the_038_shape_and_key_order(sim038: SimInstance) -> None:
    recorded = json.loads((HERE / "system_stats.json").read_text(encoding="utf-8"))
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{sim038.url}/system_stats") as response,
    ):
        stats = await response.json()
    assert shape_differences(recorded["example_cpu"], stats) == []
    assert list(stats["system"]) == recorded["key_order_system"]
    assert stats["system"]["os"] in ("linux", "win32", "darwin")
    assert stats["system"]["comfyui_version"].startswith("0.38")


@pytest.mark.asyncio
async def test_a_prompt_id_that_is_not_a_canonical_uuid_is_refused(sim038: SimInstance) -> None:
    routes = json.loads((HERE / "routes.json").read_text(encoding="utf-8"))
    answers = routes["details"]["POST /prompt"]["responses"]
    refused = next(
        a["body"] for a in answers if a.get("case", "").startswith("prompt_id not a canonical")
    )
    prompt = json.loads((RECORDINGS / "workflows" / "workflow_nomodel.json").read_text())
    good = str(uuid.uuid4())
    async with aiohttp.ClientSession() as session:
        for chosen in ("job-1", good.upper(), good.replace("-", ""), 7):
            body = {"prompt": prompt, "prompt_id": chosen}
            assert await post_json(session, f"{sim038.url}/prompt", body) == (400, refused)
        status, answer = await post_json(
            session, f"{sim038.url}/prompt", {"prompt": prompt, "prompt_id": good}
        )
    assert status == 200 and answer["prompt_id"] == good


def _routes() -> dict[str, Any]:
    return dict(json.loads((HERE / "routes.json").read_text(encoding="utf-8"))["details"])


def _answer(route: str, case_start: str) -> Any:
    return next(
        a["body"] for a in _routes()[route]["responses"] if a.get("case", "").startswith(case_start)
    )


@pytest.mark.asyncio
async def test_unknown_and_missing_node_types_answer_038s_missing_node_type(
    sim038: SimInstance,
) -> None:
    unknown = _answer("POST /prompt", "unknown class_type")
    untyped = _answer("POST /prompt", "node without class_type")
    async with aiohttp.ClientSession() as session:
        url = f"{sim038.url}/prompt"
        prompt = {"1": {"class_type": "NoSuchNode", "inputs": {}}}
        assert await post_json(session, url, {"prompt": prompt}) == (400, unknown)
        assert await post_json(session, url, {"prompt": {"1": {"inputs": {}}}}) == (400, untyped)
        titled = {"1": {"class_type": "NoSuchNode", "inputs": {}, "_meta": {"title": "Upscale"}}}
        _, answer = await post_json(session, url, {"prompt": titled})
    assert answer["error"]["message"] == (
        "Node 'Upscale' not found. The custom node may not be installed."
    )
    assert answer["error"]["extra_info"]["node_title"] == "Upscale"


@pytest.mark.asyncio
async def test_a_cycle_is_a_dependency_cycle_node_error(sim038: SimInstance) -> None:
    recorded = _routes()["POST /prompt"]["node_error_types"]["new"]["dependency_cycle"]
    prompt = {
        "1": {"class_type": "ImageInvert", "inputs": {"image": ["2", 0]}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "c"}},
    }
    async with aiohttp.ClientSession() as session:
        status, answer = await post_json(session, f"{sim038.url}/prompt", {"prompt": prompt})
    assert status == 400 and answer["error"]["type"] == "prompt_outputs_failed_validation"
    ((node, entry),) = answer["node_errors"].items()
    (error,) = entry["errors"]
    assert error["type"] == "dependency_cycle" and error["message"] == recorded["message"]
    assert sorted(error["extra_info"]) == sorted(recorded["extra_info"])
    assert sorted(error["extra_info"]["cycle_nodes"]) == ["1", "2"]
    assert error["extra_info"]["node_id"] == node and entry["dependent_outputs"] == ["3"]
    assert error["details"] == f"{node} (ImageInvert) -> {'1' if node == '2' else '2'} " + (
        f"(ImageInvert) -> {node} (ImageInvert)"
    )


def _beyond_asset_ids(differences: list[str]) -> list[str]:
    """The recorded examples show output items without the asset ids an item gains when
    assets are on (the default: ws_events.md, executed)."""
    return [d for d in differences if not d.endswith(("extra key 'id'", "extra key 'preview_id'"))]


@pytest.fixture
def slow038(sim_factory: Callable[..., SimInstance]) -> SimInstance:
    return sim_factory("slow038", args=[*VERSION, "--cpu", "--sim-time-scale", "20"])


@pytest.mark.asyncio
async def test_the_jobs_api_answers_in_the_recorded_shapes(sim038: SimInstance) -> None:
    routes = _routes()
    listed = routes["GET /api/jobs"]["responses"][0]["body"]
    detail = routes["GET /api/jobs/{job_id}"]["responses"][0]["body_history_job"]
    prompt = json.loads((RECORDINGS / "workflows" / "workflow_nomodel.json").read_text())
    workflow_id = str(uuid.uuid4())
    async with aiohttp.ClientSession() as session, listen(session, sim038.url, "fleet-1") as ws:
        body = {
            "prompt": prompt,
            "client_id": "fleet-1",
            "extra_data": {"extra_pnginfo": {"workflow": {"id": workflow_id}}},
        }
        _, queued = await post_json(session, f"{sim038.url}/prompt", body)
        job_id = queued["prompt_id"]
        await ws.finished(job_id)
        jobs = await get_json(session, f"{sim038.url}/api/jobs")
        job = await get_json(session, f"{sim038.url}/api/jobs/{job_id}")
        by_workflow = await get_json(
            session, f"{sim038.url}/api/jobs?workflow_id={workflow_id}&status=completed"
        )
        doubled = await get_json(session, f"{sim038.url}/api/api/jobs?limit=1")
        async with session.get(f"{sim038.url}/api/jobs/{uuid.uuid4()}") as response:
            missing = (response.status, await response.json())
    assert _beyond_asset_ids(shape_differences(listed["jobs"][0], jobs["jobs"][0])) == []
    assert shape_differences(listed["pagination"], jobs["pagination"]) == []
    assert jobs["jobs"][0]["status"] == "completed" and jobs["jobs"][0]["id"] == job_id
    assert jobs["jobs"][0]["workflow_id"] == workflow_id
    assert [j["id"] for j in by_workflow["jobs"]] == [job_id]
    assert doubled["pagination"] == {"offset": 0, "limit": 1, "total": 1, "has_more": False}
    # (the recorded detail has no workflow id; job_fields says it is there when the run has one;
    # its workflow.prompt is shown empty)
    expected = {**detail, "workflow_id": workflow_id, "workflow": {}}
    assert _beyond_asset_ids(shape_differences(expected, {**job, "workflow": {}})) == []
    assert job["workflow"]["prompt"] == prompt
    assert job["workflow"]["extra_data"]["client_id"] == "fleet-1"
    assert job["execution_status"]["status_str"] == "success"
    assert missing == (404, routes["GET /api/jobs/{job_id}"]["responses"][1]["body"])


@pytest.mark.asyncio
async def test_the_jobs_api_refuses_bad_queries_with_the_recorded_sentences(
    sim038: SimInstance,
) -> None:
    recorded = [a["body"] for a in _routes()["GET /api/jobs"]["responses"][1:]]
    queries = [
        "status=done",
        "sort_by=name",
        "sort_order=up",
        "limit=0",
        "limit=x",
        "offset=x",
    ]
    answers = []
    async with aiohttp.ClientSession() as session:
        for query in queries:
            async with session.get(f"{sim038.url}/api/jobs?{query}") as response:
                answers.append((response.status, await response.json()))
    assert answers == [(400, body) for body in recorded]


@pytest.mark.asyncio
async def test_cancelling_jobs_says_whether_anything_was_cancelled(slow038: SimInstance) -> None:
    answers = {
        a.get("case", ""): a["body"] for a in _routes()["POST /api/jobs/cancel"]["responses"]
    }
    invalid = next(b for c, b in answers.items() if c.startswith("any element"))
    slow = json.loads((RECORDINGS / "workflows" / "workflow_slow.json").read_text())
    url = slow038.url
    async with aiohttp.ClientSession() as session, listen(session, url, "fleet-1") as ws:
        ids = []
        for _ in range(3):
            _, queued = await post_json(
                session, f"{url}/prompt", {"prompt": slow, "client_id": "fleet-1"}
            )
            ids.append(queued["prompt_id"])
        await ws.until("execution_start", ids[0])
        pending = await post_json(session, f"{url}/api/jobs/{ids[2]}/cancel", None)
        # one running (interrupted), one pending (taken out)
        batch = await post_json(session, f"{url}/api/jobs/cancel", {"job_ids": ids[:2]})
        await ws.until("execution_interrupted", ids[0])
        await ws.until("executing", ids[0], node=None)
        again = await post_json(session, f"{url}/api/jobs/{ids[0]}/cancel", None)
        empty = await post_json(session, f"{url}/api/jobs/cancel", {"job_ids": []})
        bad = await post_json(session, f"{url}/api/jobs/cancel", {"job_ids": ["not-a-uuid", 123]})
        not_list = await post_json(session, f"{url}/api/jobs/cancel", {"job_ids": "x"})
        cancelled = await get_json(session, f"{url}/api/jobs/{ids[0]}")
        queue = await get_json(session, f"{url}/queue")
    assert pending == batch == (200, {"cancelled": True})
    assert again == empty == (200, {"cancelled": False})
    assert bad == (400, invalid)
    assert not_list == (400, {"error": "job_ids must be a list"})
    assert cancelled["status"] == "cancelled"
    assert queue == {"queue_running": [], "queue_pending": []}


@pytest.mark.asyncio
async def test_outputs_carry_asset_ids_and_asset_scans_reach_every_socket(
    sim_factory: Callable[..., SimInstance],
) -> None:
    sim = sim_factory("assets038", args=[*VERSION, "--cpu", "--sim-time-scale", "0.05"])
    prompt = json.loads((RECORDINGS / "workflows" / "workflow_nomodel.json").read_text())
    async with (
        aiohttp.ClientSession() as session,
        listen(session, sim.url, "fleet-1") as own,
        listen(session, sim.url, "someone-else") as other,
    ):
        body = {"prompt": prompt, "client_id": "fleet-1"}
        _, queued = await post_json(session, f"{sim.url}/prompt", body)
        events = await own.finished(queued["prompt_id"])
        executed = next(e["data"]["output"] for e in events if e["type"] == "executed")
        history = await get_json(session, f"{sim.url}/history/{queued['prompt_id']}")
        scan = await other.until("assets.seed.completed")
    (image,) = executed["images"]
    assert set(image) == {"filename", "subfolder", "type", "id", "preview_id"}
    assert str(uuid.UUID(image["id"])) == image["id"]
    saved = history[queued["prompt_id"]]["outputs"]
    assert next(iter(saved.values()))["images"] == [image]
    seen = [e["type"] for e in other.events if e["type"].startswith("assets.seed.")]
    assert seen == [
        "assets.seed.started",
        "assets.seed.progress",
        "assets.seed.fast_complete",
        "assets.seed.completed",
    ]
    assert set(scan["data"]) == {"phase", "total", "created", "enriched", "skipped", "elapsed"}
    assert scan["data"]["created"] == 1


def test_a_second_038_on_the_same_user_directory_exits_as_recorded(
    sim_factory: Callable[..., SimInstance], tmp_path: Path
) -> None:
    failures = _launches()["startup_failures"]
    first = sim_factory("shared", args=[*VERSION, "--cpu"])
    second = sim_factory("shared", args=[*VERSION, "--cpu"], wait=False)
    assert second.process.wait(timeout=30) == failures["exit_code"]
    lines = second.log_path.read_text().splitlines()
    start = lines.index(failures["first_line_prefix"] + "in_use")
    database = tmp_path / "shared" / "user" / "comfyui.db"
    recorded = failures["kinds"]["in_use"].replace("<db path>", str(database)).splitlines()
    recorded = [line.strip("[]") for line in recorded]  # the bracketed line: no --database-url
    assert lines[start + 1 :] == recorded
    own = sim_factory(
        "shared", args=[*VERSION, "--cpu", "--database-url", f"sqlite:///{tmp_path}/own.db"]
    )
    without = sim_factory("shared", args=[*VERSION, "--cpu", "--disable-assets"])
    assert first.process.poll() is None and own.process.poll() is None
    assert without.process.poll() is None


def test_a_038_on_a_port_in_use_logs_one_line_and_exits_1(
    sim_factory: Callable[..., SimInstance],
) -> None:
    recorded = _launches()["port_in_use"]
    first = sim_factory("first", args=[*VERSION, "--cpu"])
    second = sim_factory("second", port=first.port, args=[*VERSION, "--cpu"], wait=False)
    assert second.process.wait(timeout=30) == recorded["exit_code"]
    last = second.log_path.read_text().splitlines()[-1]
    assert last == recorded["log_line"].replace("8188", str(first.port))
    assert "Traceback" not in second.log_path.read_text()


@pytest.mark.asyncio
async def test_038_lists_every_visible_gpu_primary_first(
    sim_factory: Callable[..., SimInstance],
) -> None:
    recorded = json.loads((HERE / "system_stats.json").read_text(encoding="utf-8"))
    sim = sim_factory("gpus", args=VERSION, env={"COMFYFLEET_SIM_GPUS": "2"})
    pinned = sim_factory(
        "pinned", args=VERSION, env={"COMFYFLEET_SIM_GPUS": "2", "CUDA_VISIBLE_DEVICES": "1"}
    )
    async with aiohttp.ClientSession() as session:
        stats = await get_json(session, f"{sim.url}/system_stats")
        one = await get_json(session, f"{pinned.url}/system_stats")
    assert shape_differences(recorded["example_two_gpus"]["devices"], stats["devices"]) == []
    assert [d["index"] for d in stats["devices"]] == [0, 1]
    assert [d["name"].split()[0] for d in stats["devices"]] == ["cuda:0", "cuda:1"]
    assert len(one["devices"]) == 1
