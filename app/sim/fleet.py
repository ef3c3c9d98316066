"""Simulated installs and running instances, for the demo, the tests and the benchmarks."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import app

REPO_ROOT = Path(app.__file__).resolve().parents[1]

MARK = "# A simulated ComfyUI install made by ComfyFleet"
MAIN_PY = (
    MARK
    + """: launched exactly like a real one.
import os
import sys

sys.path.insert(0, {repo!r})

from app.sim.__main__ import main

sys.exit(main(install_dir=os.path.dirname(os.path.abspath(__file__))))
"""
)


def create_sim_install(folder: Path, **sim: Any) -> Path:
    """A folder with a main.py that runs the simulator, and sim.json for its settings."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "main.py").write_text(MAIN_PY.format(repo=str(REPO_ROOT)), encoding="utf-8")
    (folder / "sim.json").write_text(json.dumps(sim, indent=2), encoding="utf-8")
    (folder / "custom_nodes" / "ComfyUI-Distributed").mkdir(parents=True, exist_ok=True)
    return folder


SIM_COMMAND = "_sim"  # the bundle's hidden command that runs the simulator
SIM_RUNPOD_COMMAND = "_sim_runpod"  # … and the simulated Runpod API


def is_sim_install(folder: Path) -> bool:
    """A folder create_sim_install made (its main.py says so on its first line)."""
    try:
        with (folder / "main.py").open(encoding="utf-8") as handle:
            return handle.readline().startswith(MARK)
    except OSError:
        return False


def sim_command() -> list[str]:
    """This Python with `-m app.sim`, or in a PyInstaller bundle its own binary."""
    if getattr(sys, "frozen", False):
        return [sys.executable, SIM_COMMAND]
    return [sys.executable, "-m", "app.sim"]


def runpod_command() -> list[str]:
    """The simulated Runpod API the same way (`python -m app.sim.runpod`)."""
    if getattr(sys, "frozen", False):
        return [sys.executable, SIM_RUNPOD_COMMAND]
    return [sys.executable, "-m", "app.sim.runpod"]


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def http_json(url: str, body: Any = None, timeout: float = 5.0) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        text = response.read()
    return json.loads(text) if text else None


@dataclass
class SimInstance:
    """One running simulated ComfyUI process."""

    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    argv: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"simulated ComfyUI exited with {self.process.returncode}: "
                    f"{self.log_path.read_text(errors='replace')[-2000:]}"
                )
            try:
                http_json(f"{self.url}/system_stats", timeout=1.0)
                return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.05)
        raise TimeoutError(f"simulated ComfyUI on port {self.port} did not answer in {timeout} s")

    def wait_listening(self, timeout: float = 30.0) -> None:
        """Wait until the server has bound its port (for faults that break /system_stats)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"simulated ComfyUI exited with {self.process.returncode}")
            if "To see the GUI go to" in self.log_path.read_text(errors="replace"):
                return
            time.sleep(0.05)
        raise TimeoutError(f"simulated ComfyUI on port {self.port} did not start in {timeout} s")

    def stop(self, timeout: float = 10.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_sim(
    workdir: Path,
    *,
    port: int | None = None,
    args: list[str] | None = None,
    env: dict[str, str] | None = None,
    wait: bool = True,
    cors: bool = True,
) -> SimInstance:
    """Start `python -m app.sim` in `workdir` (its base folder) on a free loopback port."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    argv = [*sim_command(), "--port", str(port), "--disable-auto-launch"]
    argv += ["--enable-cors-header"] if cors else []
    argv += args or []
    environment = {
        **os.environ,
        "COMFYFLEET_SIM_ROOT": str(workdir),
        "PYTHONPATH": str(REPO_ROOT),
        **(env or {}),
    }
    log_path = workdir / f"sim-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            argv, cwd=workdir, env=environment, stdout=log, stderr=subprocess.STDOUT
        )
    instance = SimInstance(port, process, log_path, argv)
    if wait:
        instance.wait_ready()
    return instance
