from __future__ import annotations

from collections.abc import Callable

import pytest

from app.sim.fleet import SimInstance


@pytest.fixture
def sim(sim_factory: Callable[..., SimInstance]) -> SimInstance:
    return sim_factory("master", args=["--sim-name", "master"])
