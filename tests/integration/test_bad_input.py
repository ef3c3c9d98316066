"""Bad input gets one clear line (exit 1 or 2), and nothing is lost or escapes its folder."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from app.core.config import FleetConfig, MasterConfig, TunnelSettings
from app.core.health import Failure, WorkerState
from app.services.comfy_client import ComfyClient
from app.services.monitor import FleetMonitor, MonitorTarget
from app.services.storage import ConfigStore
from app.services.supervisor import Supervisor
from app.sim.fleet import SimInstance, free_port
from tests.fakes import install_cloudflared
from tests.integration.cli_helpers import comfy_fleet


def _fails(done: subprocess.CompletedProcess[str], code: int, *said: str) -> str:
    assert done.returncode == code, done.stderr
    err = done.stderr
    assert "Traceback" not in err, err
    for words in said:
        assert words in err, err
    return err


def test_a_bracketed_ipv6_host_is_stored_plainly_and_probed(tmp_path: Path) -> None:
    cfg = tmp_path / "fleet.json"
    port = free_port()
    added = comfy_fleet(
        "worker",
        "add",
        "remote",
        "--name",
        "v6",
        "--host",
        "[::1]",
        "--port",
        str(port),
        config=cfg,
    )
    assert added.returncode == 0, added.stderr
    worker = json.loads(comfy_fleet("worker", "list", "--json", config=cfg).stdout)[0]
    assert (worker["host"], worker["url"]) == ("::1", f"http://[::1]:{port}")
    status = comfy_fleet("status", "--json", config=cfg)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["workers"][0]["state"] == "offline"


@pytest.mark.asyncio
async def test_one_bad_address_does_not_stop_the_others(
    sim_factory: Callable[..., SimInstance],
) -> None:
    good = sim_factory("good")
    client = ComfyClient()
    monitor = FleetMonitor(client)
    heard: list[tuple[str, WorkerState, Failure | None]] = []
    monitor.subscribe(lambda h: heard.append((h.name, h.state, h.failure)))
    monitor.set_targets(
        [
            MonitorTarget("bad", "remote", "http://[[::1]]:8191"),  # as an old bug stored it
            MonitorTarget("good", "remote", good.url),
        ]
    )
    try:
        while sum(1 for n, s, _ in heard if n == "good" and s is WorkerState.ONLINE) < 2:
            await asyncio.sleep(0.05)
    finally:
        await monitor.stop()
        await client.close()
    bad = [(s, f) for n, s, f in heard if n == "bad" and s is WorkerState.OFFLINE]
    assert bad and bad[0] == (WorkerState.OFFLINE, Failure.BAD_ADDRESS)
    assert "bad address" in str(monitor.health("bad").error)  # type: ignore[union-attr]


def test_a_config_path_that_is_a_folder_is_explained(tmp_path: Path) -> None:
    folder = tmp_path / "fleet.json"
    folder.mkdir()
    _fails(comfy_fleet("worker", "list", config=folder), 1, "is a folder, not a config file")


def test_settings_of_a_newer_version_survive_a_save(tmp_path: Path) -> None:
    cfg = tmp_path / "fleet.json"
    data = {
        "schema_version": 1,
        "future_top": {"x": 1},
        "master": {"host": "127.0.0.1", "port": 8188, "future_master": True},
        "workers": [
            {"name": "lan", "kind": "remote", "host": "127.0.0.9", "port": 8188, "future": [1]}
        ],
        "tunnel": {"future_tunnel": "yes"},
        "app": {"future_app": 2.5},
    }
    cfg.write_text(json.dumps(data))
    added = comfy_fleet("worker", "add", "local", "--name", "gpu1", config=cfg)
    assert added.returncode == 0, added.stderr
    saved = json.loads(cfg.read_text())
    assert saved["future_top"] == {"x": 1} and saved["master"]["future_master"] is True
    assert saved["workers"][0]["future"] == [1] and "future" not in saved["workers"][1]
    assert saved["tunnel"]["future_tunnel"] == "yes" and saved["app"]["future_app"] == 2.5


@pytest.mark.parametrize(
    "args",
    [
        ["--host", "https://pod.example.invalid:59591"],
        ["--host", "http://pod.example.invalid"],
        ["--host", "pod.example.invalid", "--port", "8188"],
    ],
)
def test_a_cloud_worker_on_another_port_is_refused_with_the_reason(
    tmp_path: Path, args: list[str]
) -> None:
    cfg = tmp_path / "fleet.json"
    done = comfy_fleet("worker", "add", "cloud", "--name", "pod", *args, config=cfg)
    _fails(done, 2, "a cloud worker is reached at https://HOST on port 443", "remote worker")


def _tunnel_config(tmp_path: Path, cloudflared: str | None) -> Path:
    cfg = tmp_path / "fleet.json"
    settings = TunnelSettings(cloudflared_path=cloudflared, confirm_exposure=False)
    ConfigStore(cfg).save(FleetConfig(master=MasterConfig(port=free_port()), tunnel=settings))
    return cfg


def test_a_cloudflared_that_cannot_run_is_named(tmp_path: Path) -> None:
    binary = install_cloudflared(tmp_path / "bin")
    binary.chmod(0o644)
    cfg = _tunnel_config(tmp_path, str(binary))
    _fails(comfy_fleet("tunnel", "start", "--yes", config=cfg), 1, "is not executable")
    on_path = _tunnel_config(tmp_path, None)
    env_path = os.environ["PATH"]
    os.environ["PATH"] = f"{binary.parent}{os.pathsep}{env_path}"
    try:
        done = comfy_fleet("tunnel", "start", "--yes", config=on_path)
    finally:
        os.environ["PATH"] = env_path
    _fails(done, 1, "cloudflared on PATH", "is not executable")


@pytest.mark.parametrize("lines", ["0", "-1", "x"])
def test_logs_refuses_a_count_below_one(tmp_path: Path, lines: str) -> None:
    _fails(comfy_fleet("logs", "gpu1", "-n", lines, config=tmp_path / "f.json"), 2, "-n")


def test_worker_names_are_stripped(tmp_path: Path) -> None:
    cfg = tmp_path / "fleet.json"
    first = comfy_fleet("worker", "add", "local", "--name", "gpu1 ", config=cfg)
    assert first.returncode == 0, first.stderr
    second = comfy_fleet("worker", "add", "local", "--name", " gpu1", config=cfg)
    _fails(second, 2, "a worker called 'gpu1' exists already")
    assert [
        w["name"] for w in json.loads(comfy_fleet("worker", "list", "--json", config=cfg).stdout)
    ] == ["gpu1"]


def test_a_gpu_config_that_is_not_utf8_is_explained(tmp_path: Path) -> None:
    path = tmp_path / "gpu_config.json"
    path.write_bytes('{"master": {"name": "café"}}'.encode("latin-1"))
    done = comfy_fleet("config", "import-distributed", str(path), config=tmp_path / "f.json")
    _fails(done, 2, "is not a UTF-8 text file")


def test_names_never_escape_the_log_folder(tmp_path: Path) -> None:
    from app.core.names import file_stem

    logs = tmp_path / "logs"
    for name in ("../../x", "..", ".", "a/b", "C:\\x", "CON", "ünï cödé", ""):
        stem = file_stem(name)
        path = (logs / f"{stem}.log").resolve()
        assert path.parent == logs.resolve(), name
        assert "/" not in stem and "\\" not in stem and stem not in ("", ".", "..")
    assert file_stem("gpu1") == "gpu1" and file_stem("a b") != file_stem("a_b")
    supervisor = Supervisor(tmp_path / "state.json", logs, ComfyClient())
    assert supervisor.log_path("../../x").parent == logs
