"""The monitor against real processes: simulated workers, a hung one, a broken one, strangers."""

from __future__ import annotations

import asyncio
import gc
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from app.core.config import AppSettings, FleetConfig, MasterConfig, WorkerConfig, WorkerKind
from app.core.health import Failure, ProbeSchedule, WorkerHealth, WorkerState
from app.services.comfy_client import ComfyClient
from app.services.monitor import FleetMonitor, MonitorTarget, targets_from_config
from app.services.storage import ConfigStore
from app.sim.fleet import SimInstance, free_port
from tests.integration.cli_helpers import comfy_fleet
from tests.local_server import local_server


@pytest.fixture
def stranger(tmp_path: Path) -> Iterator[int]:
    """A web server that is not ComfyUI: Python's own http.server."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    import socket
    import time

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.05)
    yield port
    process.kill()
    process.wait()


@pytest.fixture
def mixed_fleet(sim_factory: Callable[..., SimInstance], stranger: int) -> FleetConfig:
    master = sim_factory("master", args=["--sim-vram-gb", "24"])
    fast = sim_factory("fast", args=["--sim-vram-gb", "80", "--sim-device", "NVIDIA H100"])
    slow = sim_factory("slow", args=["--sim-vram-gb", "12", "--sim-time-scale", "4"])
    hung = sim_factory("hung", env={"COMFYFLEET_SIM_FAULTS": "hang"}, wait=False)
    broken = sim_factory("broken", env={"COMFYFLEET_SIM_FAULTS": "http500"}, wait=False)
    hung.wait_listening()
    broken.wait_listening()

    def remote(name: str, port: int, host: str = "127.0.0.1") -> WorkerConfig:
        return WorkerConfig(name, WorkerKind.REMOTE, host=host, port=port)

    return FleetConfig(
        master=MasterConfig(port=master.port),
        workers=(
            remote("fast", fast.port),
            remote("slow", slow.port),
            remote("hung", hung.port),
            remote("broken", broken.port),
            remote("closed", free_port()),
            remote("stranger", stranger),
            remote("nowhere", 8188, "no-such-host.invalid"),
            WorkerConfig("off", WorkerKind.REMOTE, host="127.0.0.1", port=fast.port, enabled=False),
        ),
    )


EXPECTED = {
    "master": (WorkerState.ONLINE, None),
    "fast": (WorkerState.ONLINE, None),
    "slow": (WorkerState.ONLINE, None),
    "hung": (WorkerState.OFFLINE, Failure.TIMEOUT),
    "broken": (WorkerState.OFFLINE, Failure.SERVER_ERROR),
    "closed": (WorkerState.OFFLINE, Failure.REFUSED),
    "stranger": (WorkerState.OFFLINE, Failure.NOT_COMFYUI),
    "nowhere": (WorkerState.OFFLINE, Failure.DNS),
    "off": (WorkerState.DISABLED, None),
}


@pytest.mark.asyncio
async def test_each_state_and_failure_class(mixed_fleet: FleetConfig, comfyui: str) -> None:
    client = ComfyClient()
    try:
        results = await FleetMonitor(client).probe_all_once(targets_from_config(mixed_fleet))
    finally:
        await client.close()
    by_name = {h.name: h for h in results}
    for name, (state, failure) in EXPECTED.items():
        assert (by_name[name].state, by_name[name].failure) == (state, failure), name
    fast, slow = by_name["fast"], by_name["slow"]
    assert (fast.vram_total, slow.vram_total) == (80 * 1024**3, 12 * 1024**3)
    assert fast.device == "cuda:0 NVIDIA H100 : cudaMallocAsync"
    assert fast.comfyui_version == {"0.3.64": "0.3.64", "0.38": "0.38.1"}[comfyui]
    assert fast.latency_ms is not None
    assert "--listen" in (by_name["closed"].error or "")
    assert "firewall" in (by_name["hung"].error or "")


def test_status_json_from_the_cli(mixed_fleet: FleetConfig, tmp_path: Path) -> None:
    config = tmp_path / "fleet.json"
    ConfigStore(config).save(mixed_fleet)
    result = comfy_fleet("status", "--json", config=config)
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    keys = {
        "name",
        "type",
        "url",
        "state",
        "error",
        "comfyui_version",
        "device",
        "other_devices",
        "vram_total",
        "vram_free",
        "queue_remaining",
        "latency_ms",
        "pid",
        "restarts",
        "last_crash",
    }
    assert set(status["master"]) == keys
    assert all(set(w) == keys for w in status["workers"])
    states = {w["name"]: w["state"] for w in status["workers"]}
    assert {n: s for n, s in states.items() if n in EXPECTED} == {
        n: s.value for n, (s, _) in EXPECTED.items() if n != "master"
    }
    fast = next(w for w in status["workers"] if w["name"] == "fast")
    assert isinstance(fast["vram_total"], int) and isinstance(fast["latency_ms"], float)
    assert status["gpus"] == [] and "No NVIDIA GPU" in status["gpu_error"]
    text = comfy_fleet("status", config=config).stdout
    assert "fast" in text and "offline" in text and "connection refused" in text


@pytest.mark.asyncio
async def test_offline_after_one_miss_and_back(sim_factory: Callable[..., SimInstance]) -> None:
    worker = sim_factory("w")
    client = ComfyClient()
    monitor = FleetMonitor(client, ProbeSchedule(idle_s=0.2, busy_s=0.1, offline_max_s=0.4))
    states: list[WorkerState] = []
    changed = asyncio.Event()

    def heard(health: WorkerHealth) -> None:
        if not states or states[-1] is not health.state:
            states.append(health.state)
            changed.set()

    async def wait_for(state: WorkerState) -> None:
        while not states or states[-1] is not state:
            changed.clear()
            await asyncio.wait_for(changed.wait(), 15)

    monitor.subscribe(heard)
    monitor.set_targets([MonitorTarget("w", "remote", worker.url)])
    try:
        await wait_for(WorkerState.ONLINE)
        worker.stop()
        await wait_for(WorkerState.OFFLINE)
        sim_factory("w", port=worker.port)
        monitor.probe_now("w")
        await wait_for(WorkerState.ONLINE)
    finally:
        await monitor.stop()
        await client.close()
    assert states == [
        WorkerState.STARTING,
        WorkerState.ONLINE,
        WorkerState.OFFLINE,
        WorkerState.ONLINE,
    ]


@pytest.mark.asyncio
async def test_busy_while_a_job_runs(sim_factory: Callable[..., SimInstance]) -> None:
    from app.sim.fleet import http_json
    from tests.integration.sim_client import workflow

    worker = sim_factory("busy", args=["--sim-time-scale", "30"])
    http_json(f"{worker.url}/prompt", {"prompt": workflow("workflow_progress")})
    client = ComfyClient()
    try:
        (health,) = await FleetMonitor(client).probe_all_once(
            [MonitorTarget("busy", "remote", worker.url)]
        )
    finally:
        await client.close()
    assert health.state is WorkerState.BUSY and health.queue_remaining == 1


@pytest.mark.asyncio
async def test_tls_failure_is_its_own_class(sim: SimInstance) -> None:
    client = ComfyClient()
    try:  # https to a plain-HTTP ComfyUI: the handshake fails as a bad certificate would
        result = await client.probe(f"https://127.0.0.1:{sim.port}")
    finally:
        await client.close()
    assert result.error is not None and result.error.failure is Failure.TLS
    assert "TLS certificate rejected" in result.error.message


@pytest.mark.asyncio
async def test_a_refused_probe_leaves_no_unread_error_behind() -> None:
    """Both GETs fail; the second's error must not end up in the log as never retrieved."""
    loop = asyncio.get_running_loop()
    reported: list[str] = []
    loop.set_exception_handler(lambda _, context: reported.append(context["message"]))
    client = ComfyClient()
    try:
        result = await client.probe(f"http://127.0.0.1:{free_port()}")
    finally:
        await client.close()
    for _ in range(3):  # let the loop run what the failure scheduled, then free it
        await asyncio.sleep(0)
    gc.collect()
    loop.set_exception_handler(None)
    assert result.error is not None and result.error.failure is Failure.REFUSED
    assert reported == []


@pytest.mark.asyncio
async def test_forbidden_origin_is_its_own_class() -> None:
    from aiohttp import web

    async def refuse(request: web.Request) -> web.Response:
        return web.Response(status=403, text="403: Forbidden")

    client = ComfyClient()
    try:
        async with local_server("/{tail:.*}", refuse) as url:
            result = await client.probe(url)
    finally:
        await client.close()
    assert result.error is not None and result.error.failure is Failure.FORBIDDEN
    assert "--enable-cors-header" in result.error.message


def test_status_watch_prints_changes(
    sim_factory: Callable[..., SimInstance], tmp_path: Path
) -> None:
    worker = sim_factory("w")
    config = tmp_path / "fleet.json"
    ConfigStore(config).save(
        FleetConfig(
            master=MasterConfig(port=worker.port),
            app=AppSettings(
                poll_interval_s=0.2, busy_poll_interval_s=0.2, offline_backoff_max_s=0.4
            ),
        )
    )
    watch = subprocess.Popen(
        [sys.executable, "-m", "app", "--config", str(config), "status", "--watch", "--json"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert watch.stdout is not None
        seen = [json.loads(watch.stdout.readline())["state"] for _ in range(2)]
        assert seen == ["starting", "online"]
        worker.stop()
        assert json.loads(watch.stdout.readline())["state"] == "offline"
    finally:
        watch.terminate()
        watch.wait(10)


@pytest.mark.asyncio
async def test_a_single_failed_probe_does_not_flip_a_worker(
    sim_factory: Callable[..., SimInstance],
) -> None:
    from aiohttp import web

    from tests.local_server import proxy_server

    sim = sim_factory("flaky-once")
    answered: list[int] = []

    async def once(request: web.Request) -> web.Response | None:
        answered.append(1)
        if len(answered) == 3:  # the third probe's stats: one HTTP 500, then fine again
            return web.Response(status=500, text="500 Internal Server Error")
        return None

    async with proxy_server(sim.url, {("GET", "/system_stats"): once}) as url:
        client = ComfyClient()
        monitor = FleetMonitor(client, ProbeSchedule(0.1, 0.1, 0.2))
        states: list[WorkerState] = []
        monitor.subscribe(lambda h: states.append(h.state))
        monitor.set_targets([MonitorTarget("w", "remote", url)])
        try:
            while len(answered) < 6:
                await asyncio.sleep(0.05)
        finally:
            await monitor.stop()
            await client.close()
    assert WorkerState.ONLINE in states and WorkerState.OFFLINE not in states
