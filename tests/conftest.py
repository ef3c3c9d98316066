"""Every test runs with its own config, data, log and state folders."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from app.sim.fleet import SimInstance, start_sim

REPO = Path(__file__).resolve().parents[1]
RECORDINGS = REPO.parent / "shared" / "recordings"

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


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
