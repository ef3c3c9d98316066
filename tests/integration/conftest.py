from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from app.sim.fleet import SimInstance
from tests.integration.runpod_helpers import SimRunpod, simulated_runpod


@pytest.fixture
def sim(sim_factory: Callable[..., SimInstance]) -> SimInstance:
    return sim_factory("master", args=["--sim-name", "master"])


@pytest.fixture
def runpod() -> Iterator[SimRunpod]:
    """The simulated Runpod API, a server process on a loopback port."""
    yield from simulated_runpod()
