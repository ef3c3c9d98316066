"""Small line charts of the last minutes: local GPUs (NVML) and remote workers' VRAM."""

from __future__ import annotations

from collections import deque

from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QColor, QPainter, QPaintEvent, QPen, QPolygonF
from PySide6.QtWidgets import QGridLayout, QLabel, QVBoxLayout, QWidget

from app.core.health import WorkerHealth
from app.services.gpus import GpuSnapshot

POINTS = 300  # 10 minutes at the 2 s default
MAX_WORKER_CHARTS = 16


class Sparkline(QWidget):
    def __init__(self, label: str, unit: str, maximum: float, color: str) -> None:
        super().__init__()
        self.label, self.unit, self.maximum = label, unit, maximum
        self.color = QColor(color)
        self.values: deque[float | None] = deque(maxlen=POINTS)
        self.setMinimumSize(160, 44)
        self.setToolTip(label)

    def add(self, value: float | None) -> None:
        self.values.append(value)
        self.update()

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        rect = self.rect().adjusted(1, 14, -1, -1)
        painter.fillRect(rect, QColor("#f8f9fa"))
        known = [v for v in self.values if v is not None]
        latest = (
            f"{known[-1]:.0f}{self.unit}" if self.values and self.values[-1] is not None else "n/a"
        )
        painter.setPen(QColor("#3c4043"))
        painter.drawText(
            self.rect().adjusted(2, 0, -2, 0), Qt.AlignmentFlag.AlignTop, f"{self.label}: {latest}"
        )
        if len(self.values) < 2:
            return
        step = rect.width() / (POINTS - 1)
        offset = rect.right() - step * (len(self.values) - 1)
        points = QPolygonF()
        for i, value in enumerate(self.values):
            if value is None:
                continue
            y = rect.bottom() - rect.height() * min(1.0, value / self.maximum)
            points.append(QPointF(offset + i * step, y))
        painter.setPen(QPen(self.color, 1.5))
        painter.drawPolyline(points)


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
        layout.addWidget(QLabel("<b>Workers' VRAM</b>"))
        self.remote = QVBoxLayout()
        layout.addLayout(self.remote)
        self.more = QLabel()
        self.more.hide()
        layout.addWidget(self.more)
        layout.addStretch(1)
        self.gpu_charts: dict[str, tuple[Sparkline, Sparkline, Sparkline]] = {}
        self.worker_charts: dict[str, Sparkline] = {}

    def add_gpu_snapshot(self, snapshot: GpuSnapshot) -> None:
        self.message.setVisible(not snapshot.available)
        if not snapshot.available:
            self.message.setText(snapshot.error or "")
        for gpu in snapshot.gpus:
            charts = self.gpu_charts.get(gpu.uuid)
            if charts is None:
                charts = (
                    Sparkline(f"GPU {gpu.index} VRAM", "%", 100, "#1a73e8"),
                    Sparkline("Util", "%", 100, "#34a853"),
                    Sparkline("Temp", " °C", 100, "#ea4335"),
                )
                row = len(self.gpu_charts) * 2
                self.local.addWidget(QLabel(f"<b>GPU {gpu.index}</b> {gpu.name}"), row, 0, 1, 3)
                for column, chart in enumerate(charts):
                    self.local.addWidget(chart, row + 1, column)
                self.gpu_charts[gpu.uuid] = charts
            vram, util, temp = charts
            vram.add(100 * gpu.memory_used / gpu.memory_total if gpu.memory_total else None)
            util.add(None if gpu.utilization is None else float(gpu.utilization))
            temp.add(None if gpu.temperature is None else float(gpu.temperature))

    def sample_workers(self, healths: list[WorkerHealth]) -> None:
        workers = [h for h in healths if h.kind != "master"]
        shown = workers[:MAX_WORKER_CHARTS]
        self.more.setVisible(len(workers) > len(shown))
        self.more.setText(f"… and {len(workers) - len(shown)} more workers (see the table)")
        for health in shown:
            chart = self.worker_charts.get(health.name)
            if chart is None:
                chart = Sparkline(health.name, "%", 100, "#8430ce")
                self.worker_charts[health.name] = chart
                self.remote.addWidget(chart)
            used = health.vram_used
            chart.add(
                100 * used / health.vram_total if used is not None and health.vram_total else None
            )
