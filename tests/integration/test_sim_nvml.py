"""The demo's simulated NVML against the recorded H200: read by the app's own GpuReader, an idle
simulated GPU reads as the recorded idle one, and one whose simulated ComfyUI runs a prompt
reads busy (utilisation, memory from its /system_stats, warming) until it is idle again."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable

import pynvml

from app.demo import demo_workflow
from app.services.gpus import GpuReader, GpuReading
from app.sim import nvml as sim_nvml
from app.sim.fleet import SimInstance, free_port, http_json
from app.sim.nvml import SimGpu, SimNvml
from tests.fakes.nvml import FakeNvml, recording_path
from tests.waiting import wait_until

RECORDED = json.loads(recording_path("gpu-h200").read_text())["snapshots"][0]["devices"][0]


def h200(port: int) -> SimGpu:
    limit = RECORDED["power_enforced_limit_mW"] // 1000
    return SimGpu(RECORDED["name"], RECORDED["uuid"], RECORDED["memory_v1"]["total"], limit, port)


def read(reader: GpuReader) -> GpuReading:
    (reading,) = reader.read().gpus
    return reading


def test_it_answers_only_calls_that_pynvml_has() -> None:
    calls = [name for name in dir(SimNvml) if name.startswith(("nvml", "NVML"))]
    assert len(calls) >= 14
    assert all(hasattr(pynvml, name) for name in calls), calls


def test_an_idle_gpu_reads_as_the_recorded_idle_h200() -> None:
    recorded = read(GpuReader(FakeNvml.recorded("gpu-h200", "t0_idle")))
    simulated = read(GpuReader(SimNvml([h200(free_port())])))  # nothing runs on it
    assert dataclasses.replace(simulated, pci_bus_id=recorded.pci_bus_id) == recorded
    assert simulated.utilization == 0 and simulated.memory_used == 0


def test_a_running_prompt_makes_it_busy_then_idle(
    sim_factory: Callable[..., SimInstance],
) -> None:
    sim = sim_factory("busy")  # (the demo's job: a few seconds)
    reader = GpuReader(SimNvml([h200(sim.port)]))
    idle = read(reader)
    assert idle.utilization == 0 and idle.temperature == sim_nvml.IDLE_C
    http_json(f"{sim.url}/prompt", {"prompt": demo_workflow()})
    wait_until(lambda: read(reader).utilization == 100)
    stats = http_json(f"{sim.url}/system_stats")["devices"][0]
    held = stats["vram_total"] - stats["vram_free"]
    assert read(reader).memory_used > 0 and abs(read(reader).memory_used - held) < 2**30
    wait_until(lambda: (read(reader).temperature or 0) > sim_nvml.IDLE_C)
    assert (read(reader).power_w or 0) > (idle.power_w or 0)
    assert (read(reader).power_limit_w or 0) == RECORDED["power_enforced_limit_mW"] / 1000
    wait_until(lambda: read(reader).utilization == 0)  # the prompt done
