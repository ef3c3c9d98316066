"""Local GPU telemetry through NVML (nvidia-ml-py), read off the event loop.

One nvmlInit for the app's life. A metric a GPU does not support reads as None ("n/a"), never
as a broken row; no driver at all is a clear "no NVIDIA GPU found" state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, TypeVar

from app.services.tasks import FailureListener

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class GpuProcess:
    pid: int
    used_memory: int | None  # None on Windows/WDDM and in some containers
    owner: str | None = None  # the ComfyFleet instance that runs this PID, if any


@dataclass(frozen=True)
class GpuReading:
    index: int
    name: str
    uuid: str
    pci_bus_id: str
    memory_total: int
    memory_used: int
    memory_free: int
    utilization: int | None
    temperature: int | None
    power_w: float | None
    power_limit_w: float | None
    processes: tuple[GpuProcess, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "name": self.name,
            "uuid": self.uuid,
            "pci_bus_id": self.pci_bus_id,
            "memory_total": self.memory_total,
            "memory_used": self.memory_used,
            "memory_free": self.memory_free,
            "utilization": self.utilization,
            "temperature": self.temperature,
            "power_w": self.power_w,
            "power_limit_w": self.power_limit_w,
            "processes": [
                {"pid": p.pid, "used_memory": p.used_memory, "owner": p.owner}
                for p in self.processes
            ],
        }


@dataclass(frozen=True)
class GpuSnapshot:
    gpus: tuple[GpuReading, ...] = ()
    error: str | None = None  # set when NVML cannot be used at all
    taken_at: float = field(default_factory=time.time)

    @property
    def available(self) -> bool:
        return self.error is None


NO_GPU = (
    "No NVIDIA GPU found (no NVIDIA driver): local GPU telemetry is off; everything else works."
)


def _load_pynvml() -> ModuleType | None:
    try:
        import pynvml
    except ImportError:
        return None
    module: ModuleType = pynvml
    return module


class GpuReader:
    """Blocking NVML reads; call `read` from a thread (GpuMonitor does)."""

    def __init__(self, nvml: Any | None = None) -> None:
        self._nvml: Any = nvml if nvml is not None else _load_pynvml()
        self._lock = threading.Lock()
        self._initialised = False
        self._init_error: str | None = None if self._nvml is not None else NO_GPU

    def _init(self) -> str | None:
        if self._initialised or self._init_error:
            return self._init_error
        nvml = self._nvml
        try:
            nvml.nvmlInit()
            self._initialised = True
        except nvml.NVMLError as exc:
            self._init_error = _explain_init(nvml, exc)
        return self._init_error

    def read(self, owners: Mapping[int, str] | None = None) -> GpuSnapshot:
        with self._lock:
            error = self._init()
            if error:
                return GpuSnapshot(error=error)
            nvml = self._nvml
            try:
                count = nvml.nvmlDeviceGetCount()
                return GpuSnapshot(tuple(self._device(i, owners or {}) for i in range(count)))
            except nvml.NVMLError as exc:
                return GpuSnapshot(error=f"NVML failed: {exc}")

    def close(self) -> None:
        with self._lock:
            if self._initialised:
                with contextlib.suppress(Exception):
                    self._nvml.nvmlShutdown()
                self._initialised = False

    def _optional(self, call: Callable[[], T]) -> T | None:
        try:
            return call()
        except self._nvml.NVMLError as exc:
            if isinstance(exc, self._nvml.NVMLError_GpuIsLost):
                raise
            return None  # NotSupported and friends: this metric reads "n/a"

    def _device(self, index: int, owners: Mapping[int, str]) -> GpuReading:
        nvml = self._nvml
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        total, used, free = self._memory(handle)
        utilization = self._optional(lambda: nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
        power = self._optional(lambda: nvml.nvmlDeviceGetPowerUsage(handle))
        limit = self._optional(lambda: nvml.nvmlDeviceGetEnforcedPowerLimit(handle))
        processes = self._optional(lambda: nvml.nvmlDeviceGetComputeRunningProcesses(handle))
        return GpuReading(
            index=index,
            name=_text(nvml.nvmlDeviceGetName(handle)),
            uuid=_text(nvml.nvmlDeviceGetUUID(handle)),
            pci_bus_id=_text(nvml.nvmlDeviceGetPciInfo(handle).busId),
            memory_total=total,
            memory_used=used,
            memory_free=free,
            utilization=utilization,
            temperature=self._optional(
                lambda: nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU)
            ),
            power_w=None if power is None else power / 1000,
            power_limit_w=None if limit is None else limit / 1000,
            processes=tuple(
                GpuProcess(p.pid, p.usedGpuMemory, owners.get(p.pid)) for p in processes or ()
            ),
        )

    def _memory(self, handle: Any) -> tuple[int, int, int]:
        nvml = self._nvml
        try:  # v2 reports the driver's reserved memory apart from what processes use
            info = nvml.nvmlDeviceGetMemoryInfo(handle, version=nvml.nvmlMemory_v2)
        except (nvml.NVMLError_FunctionNotFound, nvml.NVMLError_NotSupported, TypeError):
            info = nvml.nvmlDeviceGetMemoryInfo(handle)
        return int(info.total), int(info.used), int(info.free)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _explain_init(nvml: Any, exc: Exception) -> str:
    if isinstance(exc, nvml.NVMLError_LibraryNotFound | nvml.NVMLError_DriverNotLoaded):
        return NO_GPU
    return f"NVML could not start: {exc}"


class GpuMonitor:
    """Polls the reader in a thread and keeps the last minutes for the charts."""

    def __init__(
        self,
        reader: GpuReader,
        interval_s: float = 2.0,
        keep_s: float = 600.0,
        on_failure: FailureListener | None = None,
    ) -> None:
        self.reader = reader
        self._on_failure = on_failure
        self.interval_s = interval_s
        self.history: deque[GpuSnapshot] = deque(maxlen=max(1, int(keep_s / interval_s)))
        self.owners: dict[int, str] = {}
        self._listeners: list[Callable[[GpuSnapshot], None]] = []
        self._task: asyncio.Task[None] | None = None

    @property
    def latest(self) -> GpuSnapshot | None:
        return self.history[-1] if self.history else None

    def subscribe(self, listener: Callable[[GpuSnapshot], None]) -> None:
        self._listeners.append(listener)

    async def read_once(self) -> GpuSnapshot:
        snapshot = await asyncio.to_thread(self.reader.read, dict(self.owners))
        self.history.append(snapshot)
        for listener in self._listeners:
            listener(snapshot)
        return snapshot

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            try:
                snapshot = await self.read_once()
            except Exception as exc:  # said, and polled again: the panel must not freeze unseen
                log.exception("reading the GPUs failed")
                if self._on_failure is not None:
                    self._on_failure("reading the GPUs", exc)
            else:
                if not snapshot.available and snapshot.error == NO_GPU:
                    return  # nothing will appear without a driver: stop polling
            await asyncio.sleep(self.interval_s)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await asyncio.to_thread(self.reader.close)
