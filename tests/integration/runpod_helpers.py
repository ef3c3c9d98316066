"""The simulated Runpod API as a real server process on a loopback port, for the tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from app.sim.fleet import REPO_ROOT, free_port

KEY = "rp_test_key_planted_0123456789"
READONLY = "rp_readonly_key_9876543210"


@dataclass
class SimRunpod:
    process: subprocess.Popen[str]
    url: str

    def fail_next_create(self, how: str) -> None:
        request = urllib.request.Request(
            f"{self.url}/sim/fail",
            data=json.dumps({"fail": how}).encode(),
            headers={"Content-Type": "application/json"},
        )
        urllib.request.urlopen(request, timeout=5).read()


def simulated_runpod(comfy_root: Path | None = None) -> Iterator[SimRunpod]:
    """Start it (with `comfy_root`, running pods are backed by simulated ComfyUIs); stopped
    when the generator closes (the `runpod` fixture)."""
    port = free_port()
    backed = ["--comfy-root", str(comfy_root)] if comfy_root else []
    process = subprocess.Popen(
        [sys.executable, "-m", "app.sim.runpod", "--port", str(port),
         "--provisioning-s", "0.3", "--starting-s", "0.3", *backed],
        stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT,
        env={**os.environ, "COMFYFLEET_SIM_RUNPOD_KEY": KEY,
             "COMFYFLEET_SIM_RUNPOD_READONLY_KEY": READONLY},
    )  # fmt: skip
    assert process.stdout is not None
    assert json.loads(process.stdout.readline()) == {"port": port}
    try:
        yield SimRunpod(process, f"http://127.0.0.1:{port}")
    finally:
        process.terminate()
        process.wait(10)
