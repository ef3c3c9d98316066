"""Distributed runs, preflight and the canary against a simulated master and workers."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from app.core.config import FleetConfig, MasterConfig, WorkerConfig, WorkerKind
from app.core.runs import Participant, Phase, Progress, RunResult
from app.core.workflow import ModelRef, load_workflow
from app.services.job_service import JobService
from app.services.jobs import RunRejected, save_outputs
from app.services.storage import ConfigStore
from app.sim.fleet import SimInstance, free_port, http_json
from tests.integration.cli_helpers import comfy_fleet
from tests.integration.sim_client import workflow
from tests.waiting import until

pytestmark = pytest.mark.asyncio


@dataclass
class Fleet:
    master: SimInstance
    workers: list[SimInstance]
    config: FleetConfig

    def write(self, path: Path) -> Path:
        ConfigStore(path).save(self.config)
        return path


def make_fleet(
    sim_factory: Callable[..., SimInstance],
    worker_args: dict[str, list[str]],
    master_args: list[str] | None = None,
    extra: tuple[WorkerConfig, ...] = (),
) -> Fleet:
    master = sim_factory("master", args=["--sim-name", "master", *(master_args or [])])
    workers = [sim_factory(n, args=["--sim-name", n, *a]) for n, a in worker_args.items()]
    configs = tuple(
        WorkerConfig(name, WorkerKind.REMOTE, "127.0.0.1", sim.port)
        for name, sim in zip(worker_args, workers, strict=True)
    )
    config = FleetConfig(master=MasterConfig(port=master.port), workers=configs + extra)
    return Fleet(master, workers, config)


def set_worker_timeout(master: SimInstance, seconds: float) -> None:
    http_json(
        f"{master.url}/distributed/config/update_setting",
        {"key": "worker_timeout_seconds", "value": seconds},
    )


async def run_everyone(fleet: Fleet, graph: dict[str, Any]) -> RunResult:
    """Sync the workers, then run `graph` on the master and every enabled worker."""
    async with aiohttp.ClientSession() as session:
        service = JobService(session, fleet.config)
        await service.sync()
        master, workers = service.participants()
        return await service.start([master, *workers], lambda p: None).execute(graph)


async def test_a_run_delivers_an_image_from_every_participant(
    sim_factory: Callable[..., SimInstance], tmp_path: Path
) -> None:
    fleet = make_fleet(sim_factory, {"w1": [], "w2": []})
    seen: list[Progress] = []
    async with aiohttp.ClientSession() as session:
        service = JobService(session, fleet.config)
        report = await service.sync()
        assert report.created == ("w1", "w2")
        master, workers = service.participants()
        run = service.start([master, *workers], seen.append)
        result = await run.execute(workflow("workflow_distributed_nomodel"))
        saved = await save_outputs(session, master.url, result, tmp_path / "out")
    assert result.worker_count == 2
    assert [(o.participant, o.seed) for o in result.outputs] == [
        ("master", 1234),
        ("w1", 1235),
        ("w2", 1236),
    ]
    assert result.skipped == ()
    assert {p.name: p.phase for p in result.participants} == {
        "master": Phase.DONE,
        "w1": Phase.DONE,
        "w2": Phase.DONE,
    }
    running = {p.name for p in seen if p.phase is Phase.RUNNING and p.node}
    assert running == {"master", "w1", "w2"}  # progress came from every participant's socket
    assert sorted(p.name.split("_")[0] for p in saved) == ["master", "w1", "w2"]
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in saved)


async def test_sync_is_idempotent_and_removes_what_was_removed(
    sim_factory: Callable[..., SimInstance],
) -> None:
    fleet = make_fleet(sim_factory, {"w1": []})
    async with aiohttp.ClientSession() as session:
        service = JobService(session, fleet.config)
        first = await service.sync()
        again = await service.sync()
        service.config = FleetConfig(master=fleet.config.master)
        gone = await service.sync(removed_ids=[first.ids["w1"]])
    assert (first.created, again.created, again.updated) == (("w1",), (), ())
    assert gone.deleted == ("w1",)
    remote = http_json(f"{fleet.master.url}/distributed/config")
    assert remote["workers"] == []


async def test_an_offline_worker_is_skipped_and_named(
    sim_factory: Callable[..., SimInstance],
) -> None:
    gone = WorkerConfig("gone", WorkerKind.REMOTE, "127.0.0.1", free_port())
    fleet = make_fleet(sim_factory, {"w1": []}, extra=(gone,))
    result = await run_everyone(fleet, workflow("workflow_distributed_nomodel"))
    assert result.skipped == ("gone",)
    assert [o.participant for o in result.outputs] == ["master", "w1"]
    gone_progress = next(p for p in result.participants if p.name == "gone")
    assert gone_progress.phase is Phase.SKIPPED and "offline" in gone_progress.error


async def test_interrupt_reaches_every_participant(
    sim_factory: Callable[..., SimInstance],
) -> None:
    slow = ["--sim-time-scale", "40"]
    fleet = make_fleet(sim_factory, {"w1": slow, "w2": slow}, master_args=slow)
    graph = workflow("workflow_distributed_nomodel")
    graph["5"] = {
        "class_type": "UpscaleModelLoader",
        "inputs": {"model_name": "tiny_compact_x2.safetensors"},
    }
    graph["6"] = {
        "class_type": "ImageUpscaleWithModel",
        "inputs": {"upscale_model": ["5", 0], "image": ["2", 0]},
    }
    graph["3"]["inputs"]["images"] = ["6", 0]
    latest: dict[str, Progress] = {}
    async with aiohttp.ClientSession() as session:
        service = JobService(session, fleet.config)
        await service.sync()
        master, workers = service.participants()
        run = service.start([master, *workers], lambda p: latest.__setitem__(p.name, p))
        task = asyncio.ensure_future(run.execute(graph))
        await until(
            lambda: all(latest.get(n) and latest[n].node == "6" for n in ("master", "w1", "w2")),
            timeout=60,
        )
        await run.interrupt()
        result = await asyncio.wait_for(task, 60)
    assert {p.name: p.phase for p in result.participants} == {
        "master": Phase.INTERRUPTED,
        "w1": Phase.INTERRUPTED,
        "w2": Phase.INTERRUPTED,
    }
    for worker in fleet.workers:
        assert http_json(f"{worker.url}/queue") == {"queue_running": [], "queue_pending": []}


async def test_preflight_names_missing_nodes_and_models(
    sim_factory: Callable[..., SimInstance],
) -> None:
    fleet = make_fleet(sim_factory, {"w1": [], "w2": ["--sim-no-distributed"]})
    graph = workflow("workflow_progress")
    graph["5"]["inputs"]["model_name"] = "4x_missing.pth"
    graph["7"] = {"class_type": "DistributedSeed", "inputs": {"seed": 1}}
    async with aiohttp.ClientSession() as session:
        service = JobService(session, fleet.config)
        master, workers = service.participants()
        checks = {c.participant: c for c in await service.preflight(graph, [master, *workers])}
    assert checks["w2"].missing_nodes == ("DistributedSeed",)
    assert checks["w1"].missing_nodes == ()
    assert checks["w1"].missing_models == (ModelRef("upscale_models", "4x_missing.pth"),)
    assert not checks["master"].ok and "4x_missing.pth" in checks["master"].summary()


async def test_rejections_become_plain_words(sim_factory: Callable[..., SimInstance]) -> None:
    fleet = make_fleet(sim_factory, {})
    graph = load_workflow(json.dumps(workflow("workflow_distributed_nomodel")))
    graph["1"]["inputs"]["width"] = 0
    graph["2"]["inputs"]["strength"] = "lots"
    async with aiohttp.ClientSession() as session:
        service = JobService(session, fleet.config)
        master, _ = service.participants()
        for use_extension in (True, False):  # the extension's 500 repr and /prompt's 400
            with pytest.raises(RunRejected) as caught:
                await service.start([master], lambda p: None, use_extension).execute(graph)
            problems = {p.node_id: p.message for p in caught.value.rejection.problems}
            assert problems["1"] == "width: Value 0 smaller than min of 1", use_extension
            assert "strength" in problems["2"]


async def test_a_run_names_the_worker_whose_images_never_arrive(
    sim_factory: Callable[..., SimInstance],
) -> None:
    fleet = make_fleet(sim_factory, {"w1": [], "silent": ["--sim-faults", "no-callback"]})
    set_worker_timeout(fleet.master, 2)
    result = await run_everyone(fleet, workflow("workflow_distributed_nomodel"))
    assert [(o.participant, o.seed) for o in result.outputs] == [("master", 1234), ("w1", 1235)]
    assert result.warnings == (
        "no images reached the master from silent: run Test fleet to find out why",
    )


async def test_cli_runs_on_a_master_without_the_extension(
    sim_factory: Callable[..., SimInstance], tmp_path: Path
) -> None:
    fleet = make_fleet(sim_factory, {"w1": []}, master_args=["--sim-no-distributed"])
    config = fleet.write(tmp_path / "fleet.json")
    path = tmp_path / "wf.json"
    path.write_text(json.dumps(workflow("workflow_nomodel")))
    run = await asyncio.to_thread(comfy_fleet, "run", str(path), "--json", config=config)
    assert run.returncode == 0, run.stderr
    assert "ComfyUI-Distributed is not installed on the master" in run.stderr
    answer = json.loads(run.stdout)
    assert answer["worker_count"] == 0
    assert [o["participant"] for o in answer["outputs"]] == ["master"]


async def test_canary_names_the_worker_that_never_delivers(
    sim_factory: Callable[..., SimInstance],
) -> None:
    gone = WorkerConfig("gone", WorkerKind.REMOTE, "127.0.0.1", free_port())
    fleet = make_fleet(
        sim_factory,
        {"good": [], "silent": ["--sim-faults", "no-callback"], "bare": ["--sim-no-distributed"]},
        extra=(gone,),
    )
    set_worker_timeout(fleet.master, 2)
    async with aiohttp.ClientSession() as session:
        reports = {r.name: r for r in await JobService(session, fleet.config).test_fleet()}
    assert [n for n, r in reports.items() if r.delivered] == ["master", "good"]
    assert reports["good"].seconds is not None and reports["good"].seconds < 10
    assert "never reached the master" in reports["silent"].error
    assert f"http://127.0.0.1:{fleet.master.port}" in reports["silent"].error
    assert "lacks the ComfyUI-Distributed extension" in reports["bare"].error
    assert reports["gone"].error.startswith("offline")


async def test_cli_run_and_test_fleet(
    sim_factory: Callable[..., SimInstance], tmp_path: Path
) -> None:
    fleet = make_fleet(sim_factory, {"w1": [], "w2": []})
    config = fleet.write(tmp_path / "fleet.json")
    path = tmp_path / "wf.json"
    path.write_text(json.dumps(workflow("workflow_distributed_nomodel")))
    run = await asyncio.to_thread(
        comfy_fleet,
        "run",
        str(path),
        "--workers",
        "w2",
        "--json",
        "--out",
        str(tmp_path / "o"),
        config=config,
    )
    assert run.returncode == 0, run.stderr
    answer = json.loads(run.stdout)
    assert set(answer) == {"prompt_id", "worker_count", "outputs", "skipped"}
    assert answer["worker_count"] == 1
    assert [(o["participant"], o["seed"]) for o in answer["outputs"]] == [
        ("master", 1234),
        ("w2", 1235),
    ]
    assert len(list((tmp_path / "o").iterdir())) == 2
    test = await asyncio.to_thread(comfy_fleet, "test-fleet", "--json", config=config)
    assert test.returncode == 0, test.stderr
    participants = json.loads(test.stdout)["participants"]
    assert [(p["name"], p["delivered"], p["error"]) for p in participants] == [
        ("master", True, None),
        ("w1", True, None),
        ("w2", True, None),
    ]


async def test_cli_run_explains_bad_workflows(
    sim_factory: Callable[..., SimInstance], tmp_path: Path
) -> None:
    fleet = make_fleet(sim_factory, {})
    config = fleet.write(tmp_path / "fleet.json")
    ui_format = tmp_path / "ui.json"
    ui_format.write_text(json.dumps({"nodes": [], "links": [], "version": 0.4}))
    broken = tmp_path / "broken.json"
    broken.write_text('{\n  "1": {"class_type": "EmptyImage",\n  }\n}')
    invalid = tmp_path / "invalid.json"
    graph = workflow("workflow_nomodel")
    graph["1"]["inputs"]["width"] = 0
    invalid.write_text(json.dumps(graph))
    answers = [
        await asyncio.to_thread(comfy_fleet, "run", str(p), config=config)
        for p in (ui_format, broken, invalid)
    ]
    assert [a.returncode for a in answers] == [1, 1, 1]
    assert "it has nothing to run" in answers[0].stderr  # converted: no nodes
    # (each Python version words the JSON error its own way: the line and column are sure)
    assert re.search(r"not valid JSON: line \d+, column \d+", answers[1].stderr)
    assert "node 1 (EmptyImage): width: Value 0 smaller than min of 1" in answers[2].stderr


async def test_a_worker_refusing_its_part_is_named_and_the_rest_stopped(
    sim_factory: Callable[..., SimInstance],
) -> None:
    """As ComfyUI-Distributed 1.4.4 does (dispatch.py: raise_for_status; job_routes: the
    error as a 500): the master queues nothing, and the parts others took keep running."""
    from aiohttp import web

    from app.services.jobs import DispatchFailed
    from tests.local_server import proxy_server

    async def refuse(request: web.Request) -> web.Response:
        return web.Response(status=500, text="500 Internal Server Error")

    slow = ["--sim-time-scale", "40"]
    fleet = make_fleet(sim_factory, {"w2": slow}, master_args=slow)
    refusing = sim_factory("w1", args=["--sim-name", "w1"])
    async with proxy_server(refusing.url, {("POST", "/prompt"): refuse}) as url:
        port = int(url.rsplit(":", 1)[1])
        workers = (*fleet.config.workers, WorkerConfig("w1", WorkerKind.REMOTE, "127.0.0.1", port))
        config = dataclasses.replace(fleet.config, workers=workers)
        seen: dict[str, Progress] = {}
        async with aiohttp.ClientSession() as session:
            service = JobService(session, config)
            await service.sync()
            master, chosen = service.participants()
            run = service.start([master, *chosen], lambda p: seen.__setitem__(p.name, p))
            with pytest.raises(DispatchFailed, match="w1: the master could not hand it its part"):
                await run.execute(workflow("workflow_distributed_nomodel"))
    assert seen["w1"].phase is Phase.FAILED and "HTTP 500" in seen["w1"].error
    for sim in (fleet.master, fleet.workers[0]):
        assert http_json(f"{sim.url}/queue") == {"queue_running": [], "queue_pending": []}


async def test_a_one_off_error_in_the_masters_check_is_named_as_such(
    sim_factory: Callable[..., SimInstance],
) -> None:
    from aiohttp import web

    from tests.local_server import proxy_server

    worker = sim_factory("w1", args=["--sim-name", "w1"])
    fleet = make_fleet(sim_factory, {})
    failed: list[str] = []

    async def once(request: web.Request) -> web.Response | None:
        if failed:
            return None  # from the second GET /prompt on, the worker itself answers
        failed.append(request.path)  # the master's check of the worker
        return web.Response(status=500, text="500 Internal Server Error")

    async with proxy_server(worker.url, {("GET", "/prompt"): once}) as url:
        port = int(url.rsplit(":", 1)[1])
        workers = (WorkerConfig("w1", WorkerKind.REMOTE, "127.0.0.1", port),)
        config = dataclasses.replace(fleet.config, workers=workers)
        async with aiohttp.ClientSession() as session:
            reports = {r.name: r for r in await JobService(session, config).test_fleet()}
    assert failed == ["/prompt"]
    assert "one-off HTTP 500" in reports["w1"].error


async def test_preflight_errors_are_said_as_the_table_says_them(
    sim_factory: Callable[..., SimInstance],
) -> None:
    fleet = make_fleet(sim_factory, {})
    gone = Participant("gone", f"http://127.0.0.1:{free_port()}", "gone")
    async with aiohttp.ClientSession() as session:
        service = JobService(session, fleet.config)
        master = service.participants()[0]
        checks = await service.preflight(workflow("workflow_nomodel"), [master, gone])
    assert checks[1].error.startswith("could not ask it: connection refused — nothing listens")
