from __future__ import annotations

from collections.abc import Callable

import pytest

from app.sim.fleet import SimInstance


@pytest.fixture(autouse=True)
def simulated_comfyui(comfyui: str) -> str:
    """The whole suite runs against each simulated ComfyUI version (tests/conftest.py)."""
    return comfyui


@pytest.fixture
def sim(sim_factory: Callable[..., SimInstance]) -> SimInstance:
    return sim_factory("master", args=["--sim-name", "master"])
