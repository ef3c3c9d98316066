"""A stand-in for the `pynvml` module that answers with NVML readings recorded on a real H200.

It raises the real pynvml error classes, so the reader's error handling is what runs on a GPU.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pynvml

from app.sim.nvml import PynvmlNames
from tests.conftest import RECORDINGS

METRICS = {"utilization", "temperature", "power", "power_limit", "processes", "memory_v2"}


def _error(code: int) -> pynvml.NVMLError:
    return pynvml.NVMLError(code)


class FakeNvml(PynvmlNames):
    """Module-shaped: the reader only touches attributes that pynvml has."""

    def __init__(self, snapshot: dict[str, Any], unsupported: set[str] | None = None) -> None:
        self.snapshot = snapshot
        self.unsupported = unsupported or set()
        self.init_calls = 0
        self.lost = False

    @classmethod
    def recorded(cls, run: str, label: str, **kwargs: Any) -> FakeNvml:
        data = json.loads((RECORDINGS / run / "nvml.json").read_text())
        snapshot = next(s for s in data["snapshots"] if s["label"] == label)
        return cls(snapshot, **kwargs)

    def _check(self, metric: str) -> None:
        if self.lost:
            raise _error(pynvml.NVML_ERROR_GPU_IS_LOST)
        if metric in self.unsupported:
            raise _error(pynvml.NVML_ERROR_NOT_SUPPORTED)

    def nvmlInit(self) -> None:
        self.init_calls += 1
        if not self.snapshot["init"]["ok"]:
            raise _error(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)

    def nvmlShutdown(self) -> None:
        pass

    def nvmlDeviceGetCount(self) -> int:
        return int(self.snapshot["device_count"])

    def nvmlDeviceGetHandleByIndex(self, index: int) -> dict[str, Any]:
        device: dict[str, Any] = self.snapshot["devices"][index]
        return device

    def nvmlDeviceGetName(self, handle: dict[str, Any]) -> str:
        return str(handle["name"])

    def nvmlDeviceGetUUID(self, handle: dict[str, Any]) -> str:
        return str(handle["uuid"])

    def nvmlDeviceGetPciInfo(self, handle: dict[str, Any]) -> SimpleNamespace:
        return SimpleNamespace(busId=handle["pci_bus_id"])

    def nvmlDeviceGetMemoryInfo(self, handle: dict[str, Any], version: int | None = None) -> Any:
        if version is not None:
            if "memory_v2" in self.unsupported:
                raise _error(pynvml.NVML_ERROR_FUNCTION_NOT_FOUND)
            return SimpleNamespace(**handle["memory_v2"])
        return SimpleNamespace(**handle["memory_v1"])

    def nvmlDeviceGetUtilizationRates(self, handle: dict[str, Any]) -> SimpleNamespace:
        self._check("utilization")
        return SimpleNamespace(**handle["utilization"])

    def nvmlDeviceGetTemperature(self, handle: dict[str, Any], sensor: int) -> int:
        self._check("temperature")
        return int(handle["temperature_gpu_C"])

    def nvmlDeviceGetPowerUsage(self, handle: dict[str, Any]) -> int:
        self._check("power")
        return int(handle["power_usage_mW"])

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: dict[str, Any]) -> int:
        self._check("power_limit")
        return int(handle["power_enforced_limit_mW"])

    def nvmlDeviceGetComputeRunningProcesses(self, handle: dict[str, Any]) -> list[Any]:
        self._check("processes")
        return [
            SimpleNamespace(pid=p["pid"], usedGpuMemory=p["usedGpuMemory"])
            for p in handle["compute_processes"]
        ]


def recording_path(run: str) -> Path:
    return RECORDINGS / run / "nvml.json"
