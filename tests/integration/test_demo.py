from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

from app import demo
from app.demo import DEMO_JOB_IMAGES, demo_workflow, start_demo_fleet
from app.services.gpus import GpuReader
from app.services.queue_service import QueuePaths
from app.services.queue_store import QueueStore
from app.services.storage import ConfigStore
from app.sim.fleet import SimInstance, http_json
from tests.waiting import wait_until


def test_demo_fleet_starts_the_remote_part_and_configures_the_local_one() -> None:
    paths, fleet = start_demo_fleet(4)
    try:
        config = ConfigStore(paths.config_file).load().config
        assert [(w.name, w.kind.value) for w in config.workers] == [
            ("gpu1-4090", "local"),
            ("lan-3090 (slow)", "remote"),
            ("pod-a100 (flaky)", "remote"),
            ("gpu2-4080 (crashes)", "local"),
        ]
        assert config.master.launched_by_app and config.app.start_fleet_on_launch
        gpus = GpuReader(fleet.nvml).read().gpus  # the local ones' simulated GPUs, one each
        assert [g.name for g in gpus] == [
            "NVIDIA GeForce RTX 4090",
            "NVIDIA GeForce RTX 4090",
            "NVIDIA GeForce RTX 4080",
        ]
        pinned = [config.master.gpu] + [w.gpu for w in config.workers if w.kind.value == "local"]
        assert pinned == [g.uuid for g in gpus]
        install = Path(config.master.comfyui_dir or "")
        assert (install / "main.py").is_file() and install.is_relative_to(paths.data_dir.parent)
        by_port = json.loads((install / "sim.json").read_text())["by_port"]
        crashing = config.worker("gpu2-4080 (crashes)")
        assert crashing is not None and "die-after" in by_port[str(crashing.port)]["faults"]
        assert len(fleet.instances) == 2  # the remote ones; the app launches the rest
        slow = http_json(f"{fleet.instances[0].url}/system_stats")
        assert "RTX 3090" in slow["devices"][0]["name"]
        versions = [
            answered(f"{i.url}/system_stats")["system"]["comfyui_version"] for i in fleet.instances
        ]
        assert versions == ["0.38.1", "0.38.1"]  # a mixed fleet: the local ones run the install's
        processes = [i.process for i in fleet.instances]
        assert config.cloud.runpod_api_url.startswith("http://127.0.0.1:")
        assert fleet.runpod is not None and fleet.runpod.poll() is None
        key = fleet.secrets().get("cloud/runpod")
        pods = http_json_with(f"{config.cloud.runpod_api_url}/v2/pods", key)["pods"]
        assert [p["name"] for p in pods] == ["demo-pod-h200"]  # renting: it joins once it runs
        queue = QueueStore(QueuePaths.under(paths.data_dir).db)
        (job,) = queue.jobs()  # the demo has a job in its queue for the window to dispatch
        assert job.total == DEMO_JOB_IMAGES and job.ended is None
        queue.close()
    finally:
        fleet.stop()
    assert all(p.poll() is not None for p in processes)
    assert fleet.runpod.poll() is not None
    assert not paths.config_file.exists()


def test_a_failed_demo_start_leaves_nothing_running(monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[SimInstance] = []
    real_start = demo.start_sim

    def start(*args: Any, **kwargs: Any) -> SimInstance:
        started.append(real_start(*args, **kwargs))
        return started[-1]

    def refuse(*_: object) -> None:
        raise OSError("the master refused the worker")

    monkeypatch.setattr(demo, "start_sim", start)
    monkeypatch.setattr(demo, "_install", refuse)  # fails after every simulator is up
    with pytest.raises(OSError, match="refused"):
        demo.start_demo_fleet(4)
    assert len(started) == 2
    assert all(instance.process.poll() is not None for instance in started)


def test_demo_command_opens_app_and_stops_fleet_on_sigterm(isolated_dirs: Path) -> None:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    app = subprocess.Popen(
        [sys.executable, "-m", "app", "demo"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    log = isolated_dirs / "xdg_state_home" / "comfy-fleet" / "log" / "comfy-fleet.log"
    try:
        wait_until(lambda: log.exists() and "started with config" in log.read_text())

        def sims() -> list[psutil.Process]:  # remote ones (app.sim) and launched ones (main.py)
            return [c for c in psutil.Process(app.pid).children(recursive=True) if simulated(c)]

        def simulated(child: psutil.Process) -> bool:
            try:  # (a child that just ended may be a zombie for a moment)
                words = " ".join(child.cmdline())
            except psutil.Error:
                return False
            return "app.sim" in words or "main.py" in words

        # 2 remote + the master and 2 local workers + the simulated Runpod (+ its pod's ComfyUI)
        wait_until(lambda: len(sims()) >= 6)
        running = sims()
        app.send_signal(signal.SIGTERM)
        assert app.wait(30) == 0
        wait_until(
            lambda: not any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in running),
            timeout=15,
        )
        text = log.read_text()
        config_line = next(line for line in text.splitlines() if "started with config" in line)
        assert "comfy-fleet-demo-" in config_line
    finally:
        if app.poll() is None:
            app.kill()
        output = app.stdout.read().decode() if app.stdout else ""
        assert "Traceback" not in output, output
    # the demo writes no config outside its temp folder
    assert not (isolated_dirs / "xdg_config_home" / "comfy-fleet" / "fleet.json").exists()


def test_the_demo_job_runs_on_the_simulator(sim_factory: Callable[..., SimInstance]) -> None:
    sim = sim_factory("demo-job")
    prompt_id = http_json(f"{sim.url}/prompt", {"prompt": demo_workflow()})["prompt_id"]
    wait_until(lambda: prompt_id in http_json(f"{sim.url}/history/{prompt_id}"))
    entry = http_json(f"{sim.url}/history/{prompt_id}")[prompt_id]
    assert entry["status"]["status_str"] == "success"
    assert [i["type"] for i in entry["outputs"]["9"]["images"]] == ["output"]


def answered(url: str) -> Any:
    """The flaky pod answers 1 request in 10 with a 500, as it is meant to: asked again."""
    replies: list[Any] = []

    def asked() -> bool:
        try:
            replies.append(http_json(url))
        except urllib.error.HTTPError as exc:
            assert exc.code == 500, exc
        return bool(replies)

    wait_until(asked, timeout=10)
    return replies[0]


def http_json_with(url: str, key: str | None) -> Any:
    import urllib.request

    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())
