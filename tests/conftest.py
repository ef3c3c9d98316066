"""Every test runs with its own config, data, log and state folders."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from app.sim.fleet import SimInstance, start_sim
from tests.integration.runpod_helpers import SimRunpod
from tests.netguard_site import netguard

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"
RECORDINGS = DATA / "recordings"  # a copy of shared/recordings (tests/data/README.md)
SHARED = REPO.parent / "shared"  # the original, beside a checkout of the steering repo only
GUARD_SITE = Path(__file__).resolve().parent / "netguard_site"

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def pytest_configure(config: pytest.Config) -> None:
    """Every Python a test starts (the CLI, the app) guards its network use as well."""
    paths = [str(GUARD_SITE), *filter(None, [os.environ.get("PYTHONPATH")])]
    os.environ["PYTHONPATH"] = os.pathsep.join(paths)
    handle, log = tempfile.mkstemp(prefix="comfyfleet-netguard-", suffix=".log")
    os.close(handle)
    os.environ[netguard.LOG_ENV] = log


def _remote_connections() -> list[str]:
    """Connections of this process (uvloop's too, which bypass Python's socket module) and
    its children that lead off this machine."""
    found = []
    me = psutil.Process()
    for process in (me, *me.children(recursive=True)):
        try:
            connections = process.net_connections(kind="inet")
        except psutil.Error:
            continue
        for conn in connections:
            if conn.raddr and not netguard.allowed(conn.raddr.ip):
                found.append(f"pid {process.pid} connected to {conn.raddr.ip}:{conn.raddr.port}")
    return found


@pytest.fixture(autouse=True)
def network_guard(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Fail any test that reaches beyond loopback or resolves a name other than localhost.

    uvloop connects in C, out of the socket module's reach: the monitor thread's uvloop is one
    whose connections pass the same checks."""
    seen: list[str] = []
    monkeypatch.setattr(
        "app.services.monitor_thread.new_loop", netguard.guarded_uvloop(seen.append)
    )
    log = Path(os.environ[netguard.LOG_ENV])
    start = log.stat().st_size
    uninstall = netguard.install(seen.append)
    try:
        yield seen
    finally:
        uninstall()
    with log.open(encoding="utf-8") as handle:
        handle.seek(start)
        seen += handle.read().splitlines()
    seen += _remote_connections()
    if seen:
        pytest.fail("reached beyond this machine: " + "; ".join(dict.fromkeys(seen)))


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    for name in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME"):
        monkeypatch.setenv(name, str(home / name.lower()))
    monkeypatch.delenv("COMFY_FLEET_CONFIG", raising=False)
    monkeypatch.delenv("COMFYFLEET_SIM_FAULTS", raising=False)
    return home


@pytest.fixture
def recordings() -> Path:
    if not RECORDINGS.is_dir():
        pytest.fail(f"the recordings are missing: expected them at {RECORDINGS}")
    return RECORDINGS


@pytest.fixture
def sim_factory(tmp_path: Path) -> Iterator[Callable[..., SimInstance]]:
    """Start simulated ComfyUI processes on free loopback ports; all stopped afterwards."""
    started: list[SimInstance] = []

    def start(name: str = "sim", **kwargs: object) -> SimInstance:
        instance = start_sim(tmp_path / name, **kwargs)  # type: ignore[arg-type]
        started.append(instance)
        return instance

    yield start
    for instance in started:
        instance.stop()


@pytest.fixture
def runpod() -> Iterator[SimRunpod]:
    """The simulated Runpod API, a server process on a loopback port."""
    from tests.integration.runpod_helpers import simulated_runpod

    yield from simulated_runpod()
