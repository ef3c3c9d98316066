from __future__ import annotations

import asyncio

import pytest

from app.services.gpus import NO_GPU, GpuMonitor, GpuReader, GpuSnapshot
from tests.fakes.nvml import FakeNvml

H200_UUID = "GPU-9664e333-53f7-c99e-3697-bff5cb199420"


def test_reads_the_recorded_h200_with_owned_processes() -> None:
    reader = GpuReader(FakeNvml.recorded("gpu-h200", "t1_both_idle"))
    snapshot = reader.read({693: "master", 785: "worker1"})
    assert snapshot.available
    (gpu,) = snapshot.gpus
    assert (gpu.name, gpu.uuid, gpu.pci_bus_id) == ("NVIDIA H200", H200_UUID, "00000000:00:06.0")
    assert gpu.memory_total == 150754820096
    assert gpu.memory_used == 1101398016  # v2: what processes use, without the reserved 615 MiB
    assert gpu.memory_free == 149008482304
    assert (gpu.utilization, gpu.temperature) == (0, 38)
    assert (gpu.power_w, gpu.power_limit_w) == (120.939, 700.0)
    assert [(p.pid, p.used_memory, p.owner) for p in gpu.processes] == [
        (693, 543162368, "master"),
        (785, 543162368, "worker1"),
    ]


def test_process_memory_follows_the_jobs() -> None:
    before = GpuReader(FakeNvml.recorded("gpu-h200", "t1_both_idle")).read().gpus[0]
    after = GpuReader(FakeNvml.recorded("gpu-h200", "t2_after_jobs")).read().gpus[0]
    exited = GpuReader(FakeNvml.recorded("gpu-h200", "t4_after_exit")).read().gpus[0]
    assert after.memory_used > before.memory_used
    assert exited.processes == () and exited.memory_used == 0


@pytest.mark.parametrize(
    "metric", ["utilization", "temperature", "power", "power_limit", "processes"]
)
def test_an_unsupported_metric_reads_na_not_a_broken_row(metric: str) -> None:
    reader = GpuReader(FakeNvml.recorded("gpu-h200", "t1_both_idle", unsupported={metric}))
    (gpu,) = reader.read().gpus
    values = {
        "utilization": gpu.utilization,
        "temperature": gpu.temperature,
        "power": gpu.power_w,
        "power_limit": gpu.power_limit_w,
        "processes": gpu.processes or None,
    }
    assert values[metric] is None
    assert gpu.name == "NVIDIA H200" and gpu.memory_total > 0


def test_memory_v1_when_v2_is_missing() -> None:
    reader = GpuReader(FakeNvml.recorded("gpu-h200", "t1_both_idle", unsupported={"memory_v2"}))
    (gpu,) = reader.read().gpus
    assert gpu.memory_used == 1746337792  # v1 counts the reserved memory as used


def test_no_driver_is_a_clear_state() -> None:
    fake = FakeNvml.recorded("cpu", "t0_idle")
    reader = GpuReader(fake)
    snapshot = reader.read()
    assert not snapshot.available and snapshot.error == NO_GPU and snapshot.gpus == ()
    reader.read()
    assert fake.init_calls == 1  # one nvmlInit for the app's life, failed or not


def test_lost_gpu_is_reported_not_raised() -> None:
    fake = FakeNvml.recorded("gpu-h200", "t1_both_idle")
    fake.lost = True
    snapshot = GpuReader(fake).read()
    assert not snapshot.available and "NVML failed" in (snapshot.error or "")


def test_monitor_reads_in_a_thread_and_keeps_history() -> None:
    monitor = GpuMonitor(
        GpuReader(FakeNvml.recorded("gpu-h200", "t2_after_jobs")), interval_s=1.0, keep_s=3.0
    )
    seen = []
    monitor.subscribe(seen.append)

    async def run() -> None:
        for _ in range(5):
            await monitor.read_once()

    asyncio.run(run())
    assert len(monitor.history) == 3 and len(seen) == 5
    assert monitor.latest is not None and monitor.latest.gpus[0].utilization is not None


def test_a_failing_read_is_said_and_polling_goes_on() -> None:
    heard: list[str] = []
    monitor = GpuMonitor(
        GpuReader(FakeNvml.recorded("gpu-h200", "t2_after_jobs")),
        interval_s=0.01,
        on_failure=lambda what, exc: heard.append(f"{what}: {exc}"),
    )
    calls = []

    def listener(snapshot: GpuSnapshot) -> None:
        calls.append(snapshot)
        if len(calls) == 1:
            raise RuntimeError("the chart broke")

    monitor.subscribe(listener)

    async def run() -> None:
        monitor.start()

        async def three_reads() -> None:
            while len(calls) < 3:
                await asyncio.sleep(0.01)

        await asyncio.wait_for(three_reads(), timeout=10)
        await monitor.stop()

    asyncio.run(run())
    assert heard == ["reading the GPUs: the chart broke"] and len(calls) >= 3
