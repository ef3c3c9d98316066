"""The simulator's sampler asks for time in proportion to pixels × steps × batch (the latent
comes through the link from EmptyLatentImage), read from the time it asks for, not a clock."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from app.sim.nodes import STEP_S, Latent, NodeResult, generic


class Recorder:
    node_id, signature = "3", "sig"

    def __init__(self, outputs: list[str]) -> None:
        self.catalogue_outputs = outputs
        self.asked: list[float] = []

    prompt_id = maker = "p"
    output_dir = temp_dir = Path(".")

    async def work(self, seconds: float) -> None:
        self.asked.append(seconds)

    async def progress(self, value: int, maximum: int) -> None:
        return None

    def load_model(self, name: str, size: int) -> None:
        return None

    async def call_extension(self, name: str, inputs: dict[str, Any]) -> NodeResult:
        raise AssertionError(name)


def sampled(width: int, height: int, batch: int, steps: int) -> float:
    empty = Recorder(["LATENT"])
    latent = asyncio.run(generic(empty, {"width": width, "height": height, "batch_size": batch}))
    assert latent.outputs == (Latent(width, height, batch),)
    sampler = Recorder(["LATENT"])
    asyncio.run(generic(sampler, {"steps": steps, "latent_image": latent.outputs[0]}))
    return sum(sampler.asked)


def test_a_samplers_time_grows_with_pixels_steps_and_batch() -> None:
    base = sampled(512, 512, 1, 10)
    assert base == pytest.approx(10 * STEP_S)
    assert sampled(512, 512, 1, 20) == pytest.approx(2 * base)
    assert sampled(1024, 512, 1, 10) == pytest.approx(2 * base)
    assert sampled(512, 512, 2, 10) == pytest.approx(2 * base)
