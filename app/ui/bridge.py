"""The one thin bridge from asyncio services to Qt signals, coalescing bursts of updates."""

from __future__ import annotations

from PySide6.QtCore import QObject, QTimer, Signal

from app.core.health import WorkerHealth
from app.services.gpus import GpuMonitor, GpuSnapshot
from app.services.monitor import FleetMonitor
from app.services.supervisor import Supervisor


class FleetBridge(QObject):
    healthChanged = Signal(list)  # list[WorkerHealth], at most every `flush_ms`
    gpusChanged = Signal(object)  # GpuSnapshot
    instanceChanged = Signal(object)  # InstanceStatus
    lineAdded = Signal(str, str)  # instance name, log line
    tunnelChanged = Signal(object)  # TunnelStatus

    def __init__(
        self, monitor: FleetMonitor, gpus: GpuMonitor, supervisor: Supervisor, flush_ms: int = 150
    ) -> None:
        super().__init__()
        self._pending: dict[str, WorkerHealth] = {}
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(flush_ms)
        self._timer.timeout.connect(self._flush)
        monitor.subscribe(self._on_health)
        gpus.subscribe(self._on_gpus)
        supervisor.on_status(self.instanceChanged.emit)
        supervisor.on_line(self.lineAdded.emit)

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
