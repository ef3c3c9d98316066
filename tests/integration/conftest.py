from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from app.sim.fleet import SimInstance, start_sim


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
def sim(sim_factory: Callable[..., SimInstance]) -> SimInstance:
    return sim_factory("master", args=["--sim-name", "master"])
