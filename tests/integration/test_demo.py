from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil
import pytest

from app import demo
from app.demo import start_demo_fleet
from app.services.storage import ConfigStore
from app.sim.fleet import SimInstance, http_json
from tests.waiting import wait_until


def test_demo_fleet_starts_registers_and_stops() -> None:
    paths, fleet = start_demo_fleet(3)
    try:
        config = ConfigStore(paths.config_file).load().config
        names = [w.name for w in config.workers]
        assert names == ["gpu1-4090", "lan-3090 (slow)", "pod-a100 (flaky)"]
        master = fleet.instances[0]
        assert config.master.port == master.port and not config.master.launched_by_app
        registered = http_json(f"{master.url}/distributed/config")["workers"]
        assert [w["port"] for w in registered] == [w.port for w in config.workers]
        slow = http_json(f"{fleet.instances[2].url}/system_stats")
        assert "--sim-time-scale" in slow["system"]["argv"]
        assert "RTX 3090" in slow["devices"][0]["name"]
        processes = [i.process for i in fleet.instances]
    finally:
        fleet.stop()
    assert all(p.poll() is not None for p in processes)
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
    monkeypatch.setattr(demo, "_register", refuse)  # fails after every simulator is up
    with pytest.raises(OSError, match="refused"):
        demo.start_demo_fleet(2)
    assert len(started) == 3
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
        children = psutil.Process(app.pid).children(recursive=True)
        sims = [c for c in children if "app.sim" in " ".join(c.cmdline())]
        assert len(sims) == 4
        app.send_signal(signal.SIGTERM)
        assert app.wait(30) == 0
        wait_until(
            lambda: not any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in sims),
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
