"""`comfy-fleet run` and `test-fleet` as a user meets them: Ctrl-C, saved files, and masters
that cannot take a job, each said in one line."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from app.core.config import FleetConfig, MasterConfig, WorkerConfig, WorkerKind
from app.services.storage import ConfigStore
from app.sim.fleet import SimInstance, free_port, http_json
from tests.integration.cli_helpers import comfy_fleet
from tests.integration.sim_client import workflow
from tests.local_server import local_server, proxy_server
from tests.waiting import wait_until


def _config(tmp_path: Path, master_port: int, *workers: WorkerConfig) -> Path:
    path = tmp_path / "fleet.json"
    ConfigStore(path).save(FleetConfig(master=MasterConfig(port=master_port), workers=workers))
    return path


def _remote(name: str, port: int) -> WorkerConfig:
    return WorkerConfig(name, WorkerKind.REMOTE, "127.0.0.1", port)


def _slow_distributed() -> dict[str, Any]:
    """workflow_slow's blurs between a DistributedSeed and a DistributedCollector."""
    graph = workflow("workflow_slow")
    graph["10"] = {"class_type": "DistributedSeed", "inputs": {"seed": 1}}
    graph["2"]["inputs"]["seed"] = ["10", 0]
    graph["5"] = {"class_type": "ImageBlur", "inputs": {**graph["3"]["inputs"], "image": ["3", 0]}}
    graph["6"] = {
        "class_type": "DistributedCollector",
        "inputs": {"images": ["5", 0], "load_balance": False},
    }
    graph["4"]["inputs"]["images"] = ["6", 0]
    return graph


def _running(sim: SimInstance) -> list[str]:
    return [str(item[1]) for item in http_json(f"{sim.url}/queue")["queue_running"]]


def _idle(sim: SimInstance) -> bool:
    return http_json(f"{sim.url}/queue") == {"queue_running": [], "queue_pending": []}


def test_ctrl_c_interrupts_every_participant_and_exits_130(
    sim_factory: Callable[..., SimInstance], tmp_path: Path
) -> None:
    scale = ["--sim-time-scale", "0.4"]  # each 2048² blur takes about 5 s
    master = sim_factory("master", args=["--sim-name", "master", *scale])
    worker = sim_factory("w1", args=["--sim-name", "w1", *scale])
    config = _config(tmp_path, master.port, _remote("w1", worker.port))
    path = tmp_path / "slow.json"
    path.write_text(json.dumps(_slow_distributed()))
    run = subprocess.Popen(
        [sys.executable, "-m", "app", "--config", str(config), "run", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(lambda: bool(_running(master) and _running(worker)), timeout=60)
        ids = {"master": _running(master)[0], "w1": _running(worker)[0]}
        run.send_signal(signal.SIGINT)
        signalled = time.monotonic()
        wait_until(lambda: _idle(master) and _idle(worker), timeout=10)
        emptied_in = time.monotonic() - signalled
        _, err = run.communicate(timeout=30)
    finally:
        run.kill()
    assert run.returncode == 130, err
    assert emptied_in < 5.0
    assert "master: interrupted 1 running" in err and "w1: interrupted 1 running" in err
    for sim, name in ((master, "master"), (worker, "w1")):
        history = http_json(f"{sim.url}/history/{ids[name]}")[ids[name]]
        events = [message[0] for message in history["status"]["messages"]]
        assert "execution_interrupted" in events, (name, events)


def test_run_json_says_where_each_image_was_saved(
    sim_factory: Callable[..., SimInstance], tmp_path: Path
) -> None:
    master, worker = sim_factory("master"), sim_factory("w1")
    config = _config(tmp_path, master.port, _remote("w1", worker.port))
    path = tmp_path / "wf.json"
    path.write_text(json.dumps(workflow("workflow_distributed_nomodel")))
    out = tmp_path / "out"
    done = comfy_fleet("run", str(path), "--json", "--out", str(out), config=config)
    assert done.returncode == 0, done.stderr
    outputs = json.loads(done.stdout)["outputs"]
    assert len(outputs) == 2
    for output in outputs:
        saved = Path(output["saved"])
        assert saved.parent == out and saved.name.endswith(output["file"])
        assert saved.read_bytes().startswith(b"\x89PNG")


def _one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


def test_a_master_that_is_not_running_is_one_line(tmp_path: Path) -> None:
    config = _config(tmp_path, free_port())
    path = tmp_path / "wf.json"
    path.write_text(json.dumps(workflow("workflow_nomodel")))
    for args in (["run", str(path)], ["test-fleet"]):
        line = _one_line_error(comfy_fleet(*args, config=config))
        assert "connection refused" in line and "the master at http://127.0.0.1:" in line


async def _answer(status: int, body: str) -> Callable[[web.Request], Any]:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=status, text=body, content_type="application/json")

    return handler


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("route", "status", "body", "said"),
    [
        (("GET", "/distributed/config"), 500, "boom", "answered HTTP 500 on /distributed/config"),
        (("POST", "/distributed/queue"), 200, "<html>ok</html>", "gave no prompt id"),
        (("POST", "/distributed/queue"), 200, '{"number": 1}', "gave no prompt id"),
    ],
)
async def test_a_master_answering_nonsense_is_one_line(
    sim_factory: Callable[..., SimInstance],
    tmp_path: Path,
    route: tuple[str, str],
    status: int,
    body: str,
    said: str,
) -> None:
    master = sim_factory("master")
    async with proxy_server(master.url, {route: await _answer(status, body)}) as url:
        config = _config(tmp_path, int(url.rsplit(":", 1)[1]))
        path = tmp_path / "wf.json"
        path.write_text(json.dumps(workflow("workflow_distributed_nomodel")))
        done = await asyncio.to_thread(comfy_fleet, "run", str(path), config=config)
    assert said in _one_line_error(done)


@pytest.mark.asyncio
async def test_something_else_at_a_workers_port_is_named_as_status_names_it(
    sim_factory: Callable[..., SimInstance], tmp_path: Path
) -> None:
    master = sim_factory("master")

    async def html(request: web.Request) -> web.Response:
        return web.Response(text="<html>a router</html>", content_type="text/html")

    async with local_server("/{tail:.*}", html) as url:
        port = int(url.rsplit(":", 1)[1])
        config = _config(tmp_path, master.port, _remote("router", port))
        fleet = json.loads(
            (await asyncio.to_thread(comfy_fleet, "test-fleet", "--json", config=config)).stdout
        )
        status = json.loads(
            (await asyncio.to_thread(comfy_fleet, "status", "--json", config=config)).stdout
        )
    report = next(p for p in fleet["participants"] if p["name"] == "router")
    assert report["error"] == status["workers"][0]["error"]
    assert "something else answers on that port" in report["error"]


@pytest.mark.parametrize("content", [b"\xff\xfe{\x00}\x00", '{"é": 1}'.encode("latin-1")])
def test_a_workflow_that_is_not_utf8_is_explained(tmp_path: Path, content: bytes) -> None:
    config = _config(tmp_path, free_port())
    path = tmp_path / "wf.json"
    path.write_bytes(content)
    line = _one_line_error(comfy_fleet("run", str(path), config=config))
    assert "wf.json is not UTF-8 text (byte " in line
