"""The one thin bridge from asyncio services to Qt signals, coalescing bursts of updates."""

from __future__ import annotations

from PySide6.QtCore import QObject, QTimer, Signal

from app.core.health import WorkerHealth
from app.services.gpus import GpuMonitor, GpuSnapshot
from app.services.monitor import FleetMonitor


class FleetBridge(QObject):
    healthChanged = Signal(list)  # list[WorkerHealth], at most every `flush_ms`
    gpusChanged = Signal(object)  # GpuSnapshot

    def __init__(self, monitor: FleetMonitor, gpus: GpuMonitor, flush_ms: int = 150) -> None:
        super().__init__()
        self._pending: dict[str, WorkerHealth] = {}
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(flush_ms)
        self._timer.timeout.connect(self._flush)
        monitor.subscribe(self._on_health)
        gpus.subscribe(self._on_gpus)

    def _on_health(self, health: WorkerHealth) -> None:
        self._pending[health.name] = health
        if not self._timer.isActive():
            self._timer.start()

    def _flush(self) -> None:
        batch, self._pending = list(self._pending.values()), {}
        if batch:
            self.healthChanged.emit(batch)

    def _on_gpus(self, snapshot: GpuSnapshot) -> None:
        self.gpusChanged.emit(snapshot)
