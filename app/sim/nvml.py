"""A simulated NVML for the demo: the `pynvml` calls of REFERENCE §4, answered for simulated
GPUs of this machine, each one read from the simulated ComfyUI that computes on it.

What an idle GPU reads is the recorded H200's (recordings/gpu-h200/nvml.json): the driver's
reserved memory, 0 % utilisation, its temperature and its share of the power limit. Memory in
use is what the instance's /system_stats says it holds. The recordings were read between jobs,
so a busy GPU is the demo's own picture, not a recording: 100 % while the instance runs a
prompt, warming towards BUSY_C and drawing BUSY_POWER of its limit, and cooling back when idle.
"""

from __future__ import annotations

import json
import math
import threading
import time
import urllib.request
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pynvml

MIB = 1024**2
IDLE_RESERVED = 644939776  # memory_v2.reserved of the recorded H200, idle or busy
IDLE_C = 37  # temperature_gpu_C of the recorded idle H200
IDLE_POWER = 124948 / 700000  # power_usage_mW / power_enforced_limit_mW, idle, recorded
BUSY_C = 68  # (the demo's picture of a busy GPU: not recorded)
BUSY_POWER = 0.85
WARMING_S = 20.0  # how fast the temperature and the power follow the work
STATE_TTL_S = 0.5  # one read of the instance serves every call of one NVML poll


@dataclass(frozen=True)
class SimGpu:
    name: str
    uuid: str
    vram_total: int
    power_limit_w: int
    port: int  # the simulated ComfyUI pinned to it, on 127.0.0.1


@dataclass
class _Device:
    gpu: SimGpu
    index: int
    used: int = 0
    busy: bool = False
    heat: float = 0.0  # 0 idle … 1 after a long run
    read_at: float = -math.inf


class PynvmlNames:
    """The error classes and constants of `pynvml` that a stand-in for it must have (the real
    ones: what the reader catches is what NVML raises)."""

    NVMLError = pynvml.NVMLError
    NVMLError_LibraryNotFound = pynvml.NVMLError_LibraryNotFound
    NVMLError_DriverNotLoaded = pynvml.NVMLError_DriverNotLoaded
    NVMLError_NotSupported = pynvml.NVMLError_NotSupported
    NVMLError_FunctionNotFound = pynvml.NVMLError_FunctionNotFound
    NVMLError_GpuIsLost = pynvml.NVMLError_GpuIsLost
    NVML_TEMPERATURE_GPU = pynvml.NVML_TEMPERATURE_GPU
    nvmlMemory_v2 = pynvml.nvmlMemory_v2


class SimNvml(PynvmlNames):
    """Module-shaped like `pynvml`."""

    def __init__(self, gpus: list[SimGpu]) -> None:
        self._devices = [_Device(gpu, index) for index, gpu in enumerate(gpus)]
        self._lock = threading.Lock()

    def nvmlInit(self) -> None:
        pass

    def nvmlShutdown(self) -> None:
        pass

    def nvmlDeviceGetCount(self) -> int:
        return len(self._devices)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> _Device:
        if not 0 <= index < len(self._devices):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return self._devices[index]

    def nvmlDeviceGetName(self, handle: _Device) -> str:
        return handle.gpu.name

    def nvmlDeviceGetUUID(self, handle: _Device) -> str:
        return handle.gpu.uuid

    def nvmlDeviceGetPciInfo(self, handle: _Device) -> SimpleNamespace:
        return SimpleNamespace(busId=f"00000000:{handle.index + 1:02X}:00.0")

    def nvmlDeviceGetMemoryInfo(self, handle: _Device, version: int | None = None) -> Any:
        self._refresh(handle)
        total = handle.gpu.vram_total
        used = min(handle.used, total - IDLE_RESERVED)
        free = total - IDLE_RESERVED - used
        if version is None:  # v1 counts the reserved memory as used
            return SimpleNamespace(total=total, free=free, used=used + IDLE_RESERVED)
        return SimpleNamespace(total=total, reserved=IDLE_RESERVED, free=free, used=used)

    def nvmlDeviceGetUtilizationRates(self, handle: _Device) -> SimpleNamespace:
        self._refresh(handle)
        busy = 100 if handle.busy else 0
        return SimpleNamespace(gpu=busy, memory=busy)

    def nvmlDeviceGetTemperature(self, handle: _Device, sensor: int) -> int:
        self._refresh(handle)
        return round(IDLE_C + (BUSY_C - IDLE_C) * handle.heat)

    def nvmlDeviceGetPowerUsage(self, handle: _Device) -> int:
        self._refresh(handle)
        share = IDLE_POWER + (BUSY_POWER - IDLE_POWER) * handle.heat
        return round(share * handle.gpu.power_limit_w * 1000)

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: _Device) -> int:
        return handle.gpu.power_limit_w * 1000

    def nvmlDeviceGetComputeRunningProcesses(self, handle: _Device) -> list[Any]:
        return []  # (the simulated ComfyUI's pid is not known here: as in a container)

    def _refresh(self, device: _Device) -> None:
        with self._lock:
            now = time.monotonic()
            if now - device.read_at < STATE_TTL_S:
                return
            elapsed = min(now - device.read_at, 60.0)
            device.read_at = now
            device.used, device.busy = _instance_state(device.gpu)
            target = 1.0 if device.busy else 0.0
            device.heat += (target - device.heat) * (1 - math.exp(-elapsed / WARMING_S))


def _instance_state(gpu: SimGpu) -> tuple[int, bool]:
    """The memory the instance holds beyond the reserved, and whether it runs a prompt; an
    instance not running (or not yet up) holds nothing."""
    base = f"http://127.0.0.1:{gpu.port}"
    try:
        stats = _get(f"{base}/system_stats")
        queue = _get(f"{base}/queue")
    except (OSError, ValueError):
        return 0, False
    device = stats["devices"][0]
    held = int(device["vram_total"]) - int(device["vram_free"])
    return held, bool(queue.get("queue_running"))


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=1.0) as response:
        return json.loads(response.read())
