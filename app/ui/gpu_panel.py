"""The GPU panel: this machine's GPUs (NVML: VRAM, utilisation, temperature, power) and every
instance's VRAM, master included, over the last minutes, each chart with its scale, in as many
columns as the dock's width holds; an instance that does not answer shows its last values
greyed, with their age."""

from __future__ import annotations

import time

from PySide6.QtCore import Qt
from PySide6.QtGui import QResizeEvent
from PySide6.QtWidgets import QGridLayout, QLabel, QVBoxLayout, QWidget

from app.core.health import WorkerHealth, WorkerState
from app.services.gpus import GpuReading, GpuSnapshot
from app.ui.history import Chart, FleetHistory
from app.ui.row_text import ago

MAX_INSTANCE_CHARTS = 16
CHART_WIDTH = 150
UP = (WorkerState.ONLINE, WorkerState.BUSY)


class WrapGrid(QWidget):
    """Widgets of one width in as many columns as fit: a narrow dock gets one column and no
    horizontal scrolling."""

    def __init__(self, cell_width: int) -> None:
        super().__init__()
        self.cell_width = cell_width
        self.grid = QGridLayout(self)
        self.grid.setContentsMargins(0, 0, 0, 0)
        self.cells: list[QWidget] = []
        self.columns = 0

    def add(self, widget: QWidget) -> None:
        self.cells.append(widget)
        self._place(force=True)

    def remove(self, widget: QWidget) -> None:
        self.cells.remove(widget)
        self.grid.removeWidget(widget)
        widget.deleteLater()
        self._place(force=True)

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._place()

    def _place(self, force: bool = False) -> None:
        spacing = max(0, self.grid.horizontalSpacing())
        columns = max(1, (self.width() + spacing) // (self.cell_width + spacing))
        if columns == self.columns and not force:
            return
        self.columns = columns
        for cell in self.cells:
            self.grid.removeWidget(cell)
        for number, cell in enumerate(self.cells):
            self.grid.addWidget(cell, number // columns, number % columns)
        for column in range(self.grid.columnCount()):
            self.grid.setColumnStretch(column, 1 if column < columns else 0)


class GpuPanel(QWidget):
    def __init__(self) -> None:
        super().__init__()
        self.setObjectName("gpuPanel")
        layout = QVBoxLayout(self)
        self.message = QLabel("Reading GPUs…")
        self.message.setWordWrap(True)
        layout.addWidget(self.message)
        self.local = QVBoxLayout()
        layout.addLayout(self.local)
        layout.addWidget(QLabel("<b>VRAM of each instance</b>"))
        self.instances = WrapGrid(CHART_WIDTH)
        layout.addWidget(self.instances)
        self.more = QLabel()
        self.more.hide()
        layout.addWidget(self.more)
        layout.addStretch(1)
        self.gpu_titles: dict[str, QLabel] = {}
        self.gpu_charts: dict[str, tuple[Chart, ...]] = {}
        self.gpu_values: dict[str, tuple[list[float | None], ...]] = {}
        self.instance_charts: dict[str, Chart] = {}

    def add_gpu_snapshot(self, snapshot: GpuSnapshot) -> None:
        self.message.setVisible(not snapshot.available)
        if not snapshot.available:
            self.message.setText(snapshot.error or "")
        for gpu in snapshot.gpus:
            charts = self.gpu_charts.get(gpu.uuid) or self._add_gpu(gpu)
            self.gpu_titles[gpu.uuid].setText(gpu_title(gpu))
            limit = gpu.power_limit_w or max(100.0, gpu.power_w or 0)
            samples = (
                100 * gpu.memory_used / gpu.memory_total if gpu.memory_total else None,
                None if gpu.utilization is None else float(gpu.utilization),
                None if gpu.temperature is None else float(gpu.temperature),
                gpu.power_w,
            )
            maxima = (None, None, None, limit)  # (power: up to this GPU's limit)
            for chart, values, sample, maximum in zip(
                charts, self.gpu_values[gpu.uuid], samples, maxima, strict=True
            ):
                values.append(sample)
                del values[:-300]
                chart.show_values(values, maximum)

    def _add_gpu(self, gpu: GpuReading) -> tuple[Chart, ...]:
        charts = (
            Chart(f"GPU {gpu.index} VRAM", "%", 100, "#1a73e8"),
            Chart("Util", "%", 100, "#34a853"),
            Chart("Temp", " °C", 100, "#ea4335"),
            Chart("Power", " W", gpu.power_limit_w or 100, "#f9ab00"),
        )
        title = QLabel()
        title.setWordWrap(True)
        title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        grid = WrapGrid(CHART_WIDTH)
        for chart in charts:
            grid.add(chart)
        self.local.addWidget(title)
        self.local.addWidget(grid)
        self.gpu_titles[gpu.uuid] = title
        self.gpu_charts[gpu.uuid] = charts
        self.gpu_values[gpu.uuid] = tuple([] for _ in charts)
        return charts

    def show_instances(self, history: FleetHistory, healths: list[WorkerHealth]) -> None:
        """One chart per instance of the fleet as it is now: removed ones leave."""
        shown = healths[:MAX_INSTANCE_CHARTS]
        names = {h.name for h in shown}
        for gone in set(self.instance_charts) - names:
            self.instances.remove(self.instance_charts.pop(gone))
        self.more.setVisible(len(healths) > len(shown))
        self.more.setText(f"… and {len(healths) - len(shown)} more (see the table)")
        now = time.time()
        for health in shown:
            if health.name not in self.instance_charts:
                self.instance_charts[health.name] = Chart(health.name, "%", 100, "#8430ce")
                self.instances.add(self.instance_charts[health.name])
            chart = self.instance_charts[health.name]
            track = history.tracks.get(health.name)
            shares = [None if v is None else 100 * v for v in track.vram_share] if track else []
            stale = ""
            if health.state not in UP:
                seen = f", last answer {ago(health.seen_at, now)} ago" if health.seen_at else ""
                stale = f"{health.state.value}{seen}"
            chart.show_values(shares, stale=stale)


def gpu_title(gpu: GpuReading) -> str:
    """`GPU 0 NVIDIA GeForce RTX 4090 · 100% · 68 °C · 383/450 W`, without what NVML can't tell."""
    parts = [f"<b>GPU {gpu.index}</b> {gpu.name}"]
    if gpu.utilization is not None:
        parts.append(f"{gpu.utilization}%")
    if gpu.temperature is not None:
        parts.append(f"{gpu.temperature} °C")
    if gpu.power_w is not None:
        limit = f"/{gpu.power_limit_w:.0f}" if gpu.power_limit_w else ""
        parts.append(f"{gpu.power_w:.0f}{limit} W")
    return " · ".join(parts)
