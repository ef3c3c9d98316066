"""A worker whose host name does not resolve is one line per state change, not an error per
probe ("Future exception was never retrieved … gaierror", as uvloop logged it)."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO

SCRIPT = """
import asyncio, logging, uvloop
logging.basicConfig(level=logging.WARNING)
from app.core.health import ProbeSchedule
from app.services.comfy_client import ComfyClient
from app.services.monitor import FleetMonitor, MonitorTarget

async def main():
    client = ComfyClient()
    monitor = FleetMonitor(client, ProbeSchedule(0.2, 0.2, 0.4))
    states = []
    monitor.subscribe(lambda h: states.append(h.failure))
    monitor.set_targets([MonitorTarget("pod", "cloud", "https://pod-gone.invalid")])
    while len(states) < 6:
        await asyncio.sleep(0.05)
    await monitor.stop()
    await client.close()
    print("probed", len(states), states[-1])

uvloop.run(main())
"""


def _isolated_network() -> list[str] | None:
    """`unshare -rn`: a network of its own with loopback alone, so the look-up fails at once
    and nothing leaves this machine (uvloop resolves in C, past the tests' guard)."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return None
    done = subprocess.run([unshare, "-rn", "true"], capture_output=True, timeout=10)
    return [unshare, "-rn"] if done.returncode == 0 else None


def test_an_unresolvable_cloud_worker_logs_no_unread_errors() -> None:
    prefix = _isolated_network()
    if prefix is None:
        pytest.skip("needs `unshare -rn` (a private network namespace) to fail look-ups safely")
    done = subprocess.run(
        [*prefix, sys.executable, "-c", SCRIPT],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "probed" in done.stdout and "dns" in done.stdout
    assert "never retrieved" not in done.stderr, done.stderr
