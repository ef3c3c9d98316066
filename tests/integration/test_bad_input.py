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


DEEP = "[" * 100_000 + "]" * 100_000


@pytest.mark.asyncio
async def test_one_workers_hostile_answer_does_not_stop_status_for_the_others(
    sim_factory: Callable[..., SimInstance], tmp_path: Path
) -> None:
    """A worker answering JSON nested 100,000 deep (a RecursionError for Python's parser) or
    a list where ComfyUI answers an object is "not ComfyUI"; the master and the others are
    shown as they are."""
    from aiohttp import web

    from tests.local_server import local_server

    good = sim_factory("good")

    async def deep(request: web.Request) -> web.Response:
        return web.Response(text=DEEP, content_type="application/json")

    async def listed(request: web.Request) -> web.Response:
        return web.Response(text="[1, 2]", content_type="application/json")

    async with (
        local_server("/{route}", deep) as deep_url,
        local_server("/{route}", listed) as list_url,
    ):
        cfg = tmp_path / "fleet.json"
        port = good.url.rsplit(":", 1)[1]
        ConfigStore(cfg).save(FleetConfig(master=MasterConfig(port=int(port))))
        for name, url in (("deep", deep_url), ("listed", list_url)):
            host, worker_port = url.removeprefix("http://").split(":")
            words = ("worker", "add", "remote", "--name", name, "--host", host)
            added = await asyncio.to_thread(comfy_fleet, *words, "--port", worker_port, config=cfg)
            assert added.returncode == 0, added.stderr
        status = await asyncio.to_thread(comfy_fleet, "status", "--json", config=cfg)
    assert status.returncode == 0 and "Traceback" not in status.stderr, status.stderr
    shown = json.loads(status.stdout)
    assert shown["master"]["state"] == "online"
    for worker in shown["workers"]:
        assert worker["state"] == "offline", worker
        assert "something else answers on that port" in worker["error"], worker


def test_a_full_disk_while_queueing_is_said_and_nothing_is_half_added(tmp_path: Path) -> None:
    """SQLite's own "database or disk is full" (its page limit, reached for real: root ignores
    file permissions and a test cannot fill the disk) and its "readonly database" are said in
    words; the job is added whole or not at all, and the queue goes on once there is room."""
    from app.core.queue import JobSpec, expand
    from app.services.queue_db import QueueStoreError
    from app.services.queue_store import QueueStore

    store = QueueStore(tmp_path / "queue.db")
    small = JobSpec("small", {"1": {"class_type": "KSampler", "inputs": {"seed": 1}}}, count=2)
    first = store.add_job(small, expand(small), tmp_path)
    pages = store._db.execute("PRAGMA page_count").fetchone()[0]
    store._db.execute(f"PRAGMA max_page_count = {pages + 2}")
    big = JobSpec("big", {"1": {"class_type": "x", "inputs": {"t": "a" * 100_000}}}, count=500)
    with pytest.raises(QueueStoreError, match="is full: free some space; nothing was changed"):
        store.add_job(big, expand(big), tmp_path)
    assert [job.name for job in store.jobs()] == ["small"] and store.job(first).total == 2
    store._db.execute("PRAGMA max_page_count = 1073741823")
    assert store.job(store.add_job(big, expand(big), tmp_path)).total == 500
    store._db.execute("PRAGMA query_only = 1")  # SQLite's own SQLITE_READONLY, as for a ro file
    with pytest.raises(QueueStoreError, match="queue.db: it or its folder is read-only"):
        store.add_job(small, expand(small), tmp_path)
    assert len(store.jobs()) == 2
    store.close()


def test_queue_run_says_when_no_participant_is_reachable(tmp_path: Path) -> None:
    """Nobody answers (the master's port is closed): said within seconds, with the reason,
    while it keeps waiting (it used to print its first line and nothing more)."""
    import signal
    import sys
    import threading

    from tests.integration.cli_helpers import read_until

    cfg = tmp_path / "fleet.json"
    ConfigStore(cfg).save(FleetConfig(master=MasterConfig(port=free_port())))
    workflow = tmp_path / "api.json"
    workflow.write_text(json.dumps({"1": {"class_type": "EmptyImage", "inputs": {}}}))
    added = comfy_fleet("queue", "add", str(workflow), "--count", "2", config=cfg)
    assert added.returncode == 0, added.stderr
    command = [sys.executable, "-m", "app", "--config", str(cfg), "queue", "run"]
    running = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    watchdog = threading.Timer(30, running.kill)  # silence ends the read, not the suite
    watchdog.start()
    try:
        seen = read_until(running, lambda lines: any("no participant is" in x for x in lines))
        said = next(line for line in seen if "no participant is" in line)
        assert said.startswith("no participant is reachable (master: ") and "waiting" in said
        assert running.poll() is None  # still waiting
    finally:
        watchdog.cancel()
        running.send_signal(signal.SIGINT)
        running.wait(20)
