"""Every test runs with its own config, data, log and state folders."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from app.core.queue_url import QUEUE_URL_ENV
from app.sim.fleet import SimInstance, start_sim
from tests.integration.runpod_helpers import SimRunpod
from tests.netguard_site import netguard
from tests.pg_server import NO_SERVER, PgServer, server_programs

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"
RECORDINGS = DATA / "recordings"  # a copy of shared/recordings (tests/data/README.md)
SHARED = REPO.parent / "shared"  # the original, beside a checkout of the steering repo only
GUARD_SITE = Path(__file__).resolve().parent / "netguard_site"

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# The simulated ComfyUI versions the integration suite runs against (--comfyui picks some).
COMFYUI_VERSIONS = ("0.3.64", "0.38")
SIM_VERSION_ENV = "COMFYFLEET_SIM_COMFYUI_VERSION"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--comfyui",
        default=",".join(COMFYUI_VERSIONS),
        help="the simulated ComfyUI version(s) for the integration suite, comma separated "
        f"(default: {','.join(COMFYUI_VERSIONS)})",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Each test that asks for `comfyui` (the whole integration suite does) once per version;
    a test marked comfyui("0.3.64") holds for that version's recordings only."""
    if "comfyui" not in metafunc.fixturenames:
        return
    wanted = [v.strip() for v in metafunc.config.getoption("comfyui").split(",") if v.strip()]
    unknown = set(wanted) - set(COMFYUI_VERSIONS)
    if unknown:
        raise pytest.UsageError(f"--comfyui: no simulated ComfyUI {', '.join(sorted(unknown))}")
    only = metafunc.definition.get_closest_marker("comfyui")
    versions = [v for v in wanted if only is None or v in only.args]
    metafunc.parametrize("comfyui", versions, indirect=True)


@pytest.fixture
def comfyui(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The simulated ComfyUI version every simulator this test starts speaks, unless the test
    says otherwise (a flag, or an install's sim.json: the default version leaves those be)."""
    version = str(request.param)
    if version == COMFYUI_VERSIONS[0]:
        monkeypatch.delenv(SIM_VERSION_ENV, raising=False)
    else:
        monkeypatch.setenv(SIM_VERSION_ENV, version)
    return version


def pytest_configure(config: pytest.Config) -> None:
    """Every Python a test starts (the CLI, the app) guards its network use as well."""
    config.addinivalue_line(
        "markers", "comfyui(*versions): holds for these simulated ComfyUI versions only"
    )
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
    monkeypatch.delenv(QUEUE_URL_ENV, raising=False)  # (a team's queue is never a test's)
    for name in ("RUNPOD_API_KEY", "HF_TOKEN", "CIVITAI_TOKEN", "TUNNEL_TOKEN"):
        monkeypatch.delenv(name, raising=False)  # (a secret handed over outside the keyring)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
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


def _pg_server() -> Iterator[PgServer]:
    programs = server_programs()
    if programs is None:
        pytest.skip(NO_SERVER)
    server = PgServer(programs)
    server.start()
    yield server
    server.remove()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """One PostgreSQL server for the session (each test gets a database of its own)."""
    yield from _pg_server()


@pytest.fixture
def own_pg_server() -> Iterator[PgServer]:
    """A server of the test's own (one it may stop and restart)."""
    yield from _pg_server()


@pytest.fixture
def pg_url(pg_server: PgServer) -> str:
    """A new, empty database on the session's server."""
    return pg_server.new_database()
