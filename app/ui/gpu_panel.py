"""The GPU panel: this machine's GPUs (NVML) and every instance's VRAM, master included,
over the last minutes, each chart with its scale; an instance that does not answer shows its
last values greyed, with their age."""

from __future__ import annotations

import time

from PySide6.QtWidgets import QGridLayout, QLabel, QVBoxLayout, QWidget

from app.core.health import WorkerHealth, WorkerState
from app.services.gpus import GpuSnapshot
from app.ui.history import Chart, FleetHistory
from app.ui.row_text import ago

MAX_INSTANCE_CHARTS = 16
UP = (WorkerState.ONLINE, WorkerState.BUSY)


class GpuPanel(QWidget):
    def __init__(self) -> None:
        super().__init__()
        self.setObjectName("gpuPanel")
        layout = QVBoxLayout(self)
        self.message = QLabel("Reading GPUs…")
        self.message.setWordWrap(True)
        layout.addWidget(self.message)
        self.local = QGridLayout()
        layout.addLayout(self.local)
        layout.addWidget(QLabel("<b>VRAM of each instance</b>"))
        self.instances = QVBoxLayout()
        layout.addLayout(self.instances)
        self.more = QLabel()
        self.more.hide()
        layout.addWidget(self.more)
        layout.addStretch(1)
        self.gpu_charts: dict[str, tuple[Chart, Chart, Chart]] = {}
        self.gpu_values: dict[str, tuple[list[float | None], ...]] = {}
        self.instance_charts: dict[str, Chart] = {}

    def add_gpu_snapshot(self, snapshot: GpuSnapshot) -> None:
        self.message.setVisible(not snapshot.available)
        if not snapshot.available:
            self.message.setText(snapshot.error or "")
        for gpu in snapshot.gpus:
            charts = self.gpu_charts.get(gpu.uuid)
            if charts is None:
                charts = (
                    Chart(f"GPU {gpu.index} VRAM", "%", 100, "#1a73e8"),
                    Chart("Util", "%", 100, "#34a853"),
                    Chart("Temp", " °C", 100, "#ea4335"),
                )
                row = len(self.gpu_charts) * 2
                self.local.addWidget(QLabel(f"<b>GPU {gpu.index}</b> {gpu.name}"), row, 0, 1, 3)
                for column, chart in enumerate(charts):
                    self.local.addWidget(chart, row + 1, column)
                self.gpu_charts[gpu.uuid] = charts
                self.gpu_values[gpu.uuid] = ([], [], [])
            samples = (
                100 * gpu.memory_used / gpu.memory_total if gpu.memory_total else None,
                None if gpu.utilization is None else float(gpu.utilization),
                None if gpu.temperature is None else float(gpu.temperature),
            )
            for chart, values, sample in zip(
                charts, self.gpu_values[gpu.uuid], samples, strict=True
            ):
                values.append(sample)
                del values[:-300]
                chart.show_values(values)

    def show_instances(self, history: FleetHistory, healths: list[WorkerHealth]) -> None:
        """One chart per instance of the fleet as it is now: removed ones leave."""
        shown = healths[:MAX_INSTANCE_CHARTS]
        names = {h.name for h in shown}
        for gone in set(self.instance_charts) - names:
            chart = self.instance_charts.pop(gone)
            self.instances.removeWidget(chart)
            chart.deleteLater()
        self.more.setVisible(len(healths) > len(shown))
        self.more.setText(f"… and {len(healths) - len(shown)} more (see the table)")
        now = time.time()
        for health in shown:
            if health.name not in self.instance_charts:
                self.instance_charts[health.name] = Chart(health.name, "%", 100, "#8430ce")
                self.instances.addWidget(self.instance_charts[health.name])
            chart = self.instance_charts[health.name]
            track = history.tracks.get(health.name)
            shares = [None if v is None else 100 * v for v in track.vram_share] if track else []
            stale = ""
            if health.state not in UP:
                seen = f", last answer {ago(health.seen_at, now)} ago" if health.seen_at else ""
                stale = f"{health.state.value}{seen}"
            chart.show_values(shares, stale=stale)
