"""Tunnels through a stand-in cloudflared that behaves like the real one (REFERENCE §3)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from aiohttp import web

from app.core.config import FleetConfig, MasterConfig, TunnelSettings, WorkerConfig, WorkerKind
from app.core.tunnel import ReleaseAsset, TunnelFailure, TunnelState
from app.services.processes import ProcessId
from app.services.storage import ConfigStore
from app.services.tunnel import TunnelError, TunnelRunner, download_cloudflared
from app.sim.fleet import SimInstance, http_json
from tests.fakes import install_cloudflared
from tests.integration.cli_helpers import comfy_fleet
from tests.local_server import local_server


@pytest.fixture
def cloudflared(tmp_path: Path) -> Path:
    return install_cloudflared(tmp_path)


def runner(tmp_path: Path, master: str) -> TunnelRunner:
    return TunnelRunner(
        tmp_path / "state" / "tunnel.json", tmp_path / "logs" / "tunnel.log", master
    )


@pytest.mark.asyncio
async def test_quick_tunnel_ready_sets_and_restores_master_host(
    sim: SimInstance, cloudflared: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = tmp_path / "argv.json"
    monkeypatch.setenv("STANDIN_RECORD", str(record))
    tunnel = runner(tmp_path, sim.url)
    seen: list[TunnelState] = []
    tunnel.on_status(lambda s: seen.append(s.state) if not seen or seen[-1] != s.state else None)
    http_json(f"{sim.url}/distributed/config/update_master", {"host": "old.example.com"})
    status = await tunnel.start(cloudflared, sim.port)
    assert status.state is TunnelState.READY and seen[:3] == [
        TunnelState.STARTING,
        TunnelState.URL_KNOWN,
        TunnelState.READY,
    ]
    assert status.url and status.url.endswith("-standin.trycloudflare.com")
    host = status.url.removeprefix("https://")
    assert http_json(f"{sim.url}/distributed/config")["master"]["host"] == host
    argv = json.loads(record.read_text())["argv"]
    assert argv[:3] == ["tunnel", "--no-autoupdate", "--url"]
    assert argv[argv.index("--url") + 1] == f"http://127.0.0.1:{sim.port}"
    metrics = argv[argv.index("--metrics") + 1]
    assert metrics.startswith("127.0.0.1:") and not metrics.endswith(":20241")
    state = json.loads(tunnel.state_file.read_text())
    assert state["url"] == status.url and state["state"] == "ready"
    pid, created = status.pid, status.create_time
    await tunnel.stop()
    assert http_json(f"{sim.url}/distributed/config")["master"]["host"] == "old.example.com"
    assert pid is not None and created is not None and ProcessId(pid, created).alive() is None
    assert "Initiating graceful shutdown" in tunnel.log_file.read_text()


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("mode", "failure"),
    [
        ("no-network", TunnelFailure.NO_NETWORK),
        ("rate-limited", TunnelFailure.RATE_LIMITED),
        ("udp-blocked", TunnelFailure.UDP_BLOCKED),
        ("exit", TunnelFailure.EXITED),
    ],
)
async def test_failures_are_classified(
    sim: SimInstance,
    cloudflared: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    mode: str,
    failure: TunnelFailure,
) -> None:
    monkeypatch.setenv("STANDIN_MODE", mode)
    tunnel = runner(tmp_path, sim.url)
    with pytest.raises(TunnelError) as error:
        await tunnel.start(cloudflared, sim.port)
    assert error.value.failure is failure
    assert tunnel.status.state is TunnelState.FAILED
    if failure is TunnelFailure.UDP_BLOCKED:
        assert "--http2" in str(error.value)
    await tunnel.stop()


@pytest.mark.asyncio
async def test_a_cloudflared_that_never_connects_is_said_as_such(
    sim: SimInstance, cloudflared: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It runs and its /ready stays 503: "never connected", not "stopped" (it was "exited")."""
    monkeypatch.setenv("STANDIN_READY_S", "3600")
    tunnel = runner(tmp_path, sim.url)
    with pytest.raises(TunnelError, match="never connected") as error:
        await tunnel.start(cloudflared, sim.port, timeout_s=1.5)
    assert error.value.failure is TunnelFailure.NEVER_CONNECTED
    assert "stopped" not in str(error.value) and "not connected after 1.5 s" in str(error.value)
    await tunnel.stop()


@pytest.mark.asyncio
async def test_two_tunnels_started_at_once_read_their_own_metrics(
    sim: SimInstance, cloudflared: Path, tmp_path: Path
) -> None:
    """Each its own metrics port, read only once it is seen to be its own cloudflared's (both
    once took the first free port from 20300: the second read the first one's URL or died)."""
    tunnels = [runner(tmp_path / name, sim.url) for name in ("a", "b")]
    started = await asyncio.gather(
        *(t.start(cloudflared, sim.port, target=f"worker{n}") for n, t in enumerate(tunnels))
    )
    try:
        for tunnel, status in zip(tunnels, started, strict=True):
            assert status.state is TunnelState.READY and status.url
            assert status.url.removeprefix("https://") in tunnel.log_file.read_text()
        assert started[0].url != started[1].url
    finally:
        for tunnel in tunnels:
            await tunnel.stop()


@pytest.mark.asyncio
async def test_missing_binary(sim: SimInstance, tmp_path: Path) -> None:
    with pytest.raises(TunnelError) as error:
        await runner(tmp_path, sim.url).start(None, sim.port)
    assert error.value.failure is TunnelFailure.BINARY_MISSING


@pytest.mark.asyncio
async def test_master_without_extension_keeps_the_tunnel(
    sim_factory: Callable[..., SimInstance], cloudflared: Path, tmp_path: Path
) -> None:
    bare = sim_factory("bare", args=["--sim-no-distributed"])
    tunnel = runner(tmp_path, bare.url)
    status = await tunnel.start(cloudflared, bare.port)
    try:
        assert status.state is TunnelState.READY
        assert "no ComfyUI-Distributed extension" in status.master_note
    finally:
        await tunnel.stop()


@pytest.mark.asyncio
async def test_named_tunnel_token_only_in_the_environment(
    sim: SimInstance, cloudflared: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = tmp_path / "argv.json"
    monkeypatch.setenv("STANDIN_RECORD", str(record))
    token = "eyJhIjoic2VjcmV0LXRva2VuLTEyMyJ9"
    tunnel = runner(tmp_path, sim.url)
    status = await tunnel.start(
        cloudflared, sim.port, name="studio", hostname="comfy.example.com", token=token
    )
    try:
        assert status.url == "https://comfy.example.com"
        recorded = json.loads(record.read_text())
        assert recorded["token_in_env"] and token not in " ".join(recorded["argv"])
        assert status.pid is not None
        cmdline = Path(f"/proc/{status.pid}/cmdline").read_bytes().decode()
        assert token not in cmdline
    finally:
        await tunnel.stop()
    assert token not in tunnel.state_file.read_text()
    assert token not in tunnel.log_file.read_text()


@pytest.mark.asyncio
async def test_download_is_verified_before_it_is_executable(tmp_path: Path) -> None:
    payload = b"#!/bin/false\nnot really cloudflared\n"

    async def serve(request: web.Request) -> web.Response:
        return web.Response(body=payload)

    asset = ReleaseAsset("cloudflared-linux-amd64", False)
    async with local_server("/{version}/{asset}", serve) as base:
        with pytest.raises(Exception, match="Checksum mismatch"):
            await download_cloudflared(base, "2026.8.0", asset, "0" * 64, tmp_path)
        assert not (tmp_path / "bin" / "cloudflared").exists()
        with pytest.raises(Exception, match="No pinned checksum"):
            await download_cloudflared(base, "2026.8.0", asset, None, tmp_path)
        good = hashlib.sha256(payload).hexdigest()
        path = await download_cloudflared(base, "2026.8.0", asset, good, tmp_path)
    assert path.read_bytes() == payload and path.stat().st_mode & 0o111


def test_cli_a_failed_start_is_one_line_and_nothing_else(
    sim: SimInstance, cloudflared: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reason and cloudflared's last lines; no "Unclosed client session" after them."""
    monkeypatch.setenv("STANDIN_MODE", "rate-limited")
    config_file = tmp_path / "fleet.json"
    settings = TunnelSettings(cloudflared_path=str(cloudflared), confirm_exposure=False)
    ConfigStore(config_file).save(FleetConfig(master=MasterConfig(port=sim.port), tunnel=settings))
    done = comfy_fleet("tunnel", "start", "--yes", config=config_file)
    assert done.returncode == 1
    assert done.stderr.startswith("comfy-fleet: tunnel failed: rate limited: "), done.stderr
    assert "Unclosed" not in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_cli_start_status_stop_from_other_processes(
    sim: SimInstance, cloudflared: Path, tmp_path: Path
) -> None:
    config_file = tmp_path / "fleet.json"
    ConfigStore(config_file).save(
        FleetConfig(
            master=MasterConfig(port=sim.port),
            tunnel=TunnelSettings(cloudflared_path=str(cloudflared)),
        )
    )
    refused = comfy_fleet("tunnel", "start", config=config_file)
    assert refused.returncode == 2 and "no login" in refused.stderr
    start = subprocess.Popen(
        [sys.executable, "-m", "app", "--config", str(config_file), "tunnel", "start", "--yes"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert start.stdout is not None
        url = start.stdout.readline().strip()
        assert url.startswith("https://") and url.endswith(".trycloudflare.com")
        status = json.loads(comfy_fleet("tunnel", "status", "--json", config=config_file).stdout)
        assert (status["state"], status["url"]) == ("ready", url)
        assert http_json(f"{sim.url}/distributed/config")["master"]["host"] == url.removeprefix(
            "https://"
        )
        stop = comfy_fleet("tunnel", "stop", config=config_file)
        assert stop.returncode == 0, stop.stderr[-600:]
        assert start.wait(20) == 0
    finally:
        if start.poll() is None:
            start.kill()
    assert http_json(f"{sim.url}/distributed/config")["master"]["host"] == ""
    after = json.loads(comfy_fleet("tunnel", "status", "--json", config=config_file).stdout)
    assert after["state"] == "stopped"
    assert not ConfigStore(config_file).load().config.tunnel.confirm_exposure  # asked once


def test_cli_tunnel_for_a_local_worker_leaves_the_master_host_alone(
    sim: SimInstance, sim_factory: Callable[..., SimInstance], cloudflared: Path, tmp_path: Path
) -> None:
    worker = sim_factory("gpu1")
    config_file = tmp_path / "fleet.json"
    ConfigStore(config_file).save(
        FleetConfig(
            master=MasterConfig(port=sim.port),
            workers=(
                WorkerConfig("gpu1", WorkerKind.LOCAL, port=worker.port),
                WorkerConfig("lan", WorkerKind.REMOTE, host="127.0.0.5", port=8188),
            ),
            tunnel=TunnelSettings(cloudflared_path=str(cloudflared), confirm_exposure=False),
        )
    )
    refused = comfy_fleet("tunnel", "start", "--for", "lan", config=config_file)
    assert refused.returncode == 2 and "'lan' is not a local worker" in refused.stderr
    argv = [sys.executable, "-m", "app", "--config", str(config_file)]
    start = subprocess.Popen(
        [*argv, "tunnel", "start", "--for", "gpu1"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert start.stdout is not None
        url = start.stdout.readline().strip()
        assert url.endswith(".trycloudflare.com")
        status = json.loads(
            comfy_fleet("tunnel", "status", "--for", "gpu1", "--json", config=config_file).stdout
        )
        assert (status["state"], status["target"], status["url"]) == ("ready", "gpu1", url)
        cloudflared_argv = Path(f"/proc/{status['pid']}/cmdline").read_bytes().split(b"\0")
        assert f"http://127.0.0.1:{worker.port}".encode() in cloudflared_argv
        master_tunnel = json.loads(
            comfy_fleet("tunnel", "status", "--json", config=config_file).stdout
        )
        assert master_tunnel["state"] == "stopped"  # the master's tunnel is another one
        assert http_json(f"{sim.url}/distributed/config")["master"]["host"] == ""
        assert comfy_fleet("tunnel", "stop", "--for", "gpu1", config=config_file).returncode == 0
        assert start.wait(20) == 0
    finally:
        if start.poll() is None:
            start.kill()
