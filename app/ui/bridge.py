"""The one thin bridge from asyncio services to Qt signals, coalescing bursts of updates."""

from __future__ import annotations

from PySide6.QtCore import QObject, QTimer, Signal

from app.services.gpus import GpuMonitor, GpuSnapshot
from app.services.monitor_thread import MonitorThread
from app.services.supervisor import Supervisor


class FleetBridge(QObject):
    healthChanged = Signal(list)  # list[WorkerHealth], at most every `poll_ms`
    gpusChanged = Signal(object)  # GpuSnapshot
    instanceChanged = Signal(object)  # InstanceStatus
    lineAdded = Signal(str, str)  # instance name, log line
    tunnelChanged = Signal(object)  # TunnelStatus

    def __init__(
        self, monitor: MonitorThread, gpus: GpuMonitor, supervisor: Supervisor, poll_ms: int = 500
    ) -> None:
        super().__init__()
        self._monitor = monitor
        self._timer = QTimer(self)  # the monitor runs in its own thread: collect its news here
        self._timer.setInterval(poll_ms)
        self._timer.timeout.connect(self._collect)
        self._timer.start()
        gpus.subscribe(self._on_gpus)
        supervisor.on_status(self.instanceChanged.emit)
        supervisor.on_line(self.lineAdded.emit)

    def _collect(self) -> None:
        batch = self._monitor.drain()
        if batch:
            self.healthChanged.emit(batch)

    def _on_gpus(self, snapshot: GpuSnapshot) -> None:
        self.gpusChanged.emit(snapshot)
