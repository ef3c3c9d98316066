"""The fleet's recent past: VRAM and latency of every instance, sampled on the table's tick,
and the small charts (with their scale) that draw it."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QPainter, QPaintEvent, QPen, QPolygonF
from PySide6.QtWidgets import QWidget

from app.core.health import WorkerHealth, WorkerState

SAMPLE_S = 2.0  # the table's tick
KEEP = 300  # 10 minutes
UP = (WorkerState.ONLINE, WorkerState.BUSY)


@dataclass
class Track:
    """One instance's samples, oldest first; None where it did not answer."""

    vram_share: deque[float | None] = field(default_factory=lambda: deque(maxlen=KEEP))
    latency_ms: deque[float | None] = field(default_factory=lambda: deque(maxlen=KEEP))
    vram_total: int | None = None


class FleetHistory:
    def __init__(self) -> None:
        self.tracks: dict[str, Track] = {}

    def sample(self, healths: Iterable[WorkerHealth]) -> None:
        seen = set()
        for health in healths:
            seen.add(health.name)
            track = self.tracks.setdefault(health.name, Track())
            up = health.state in UP
            used, total = health.vram_used, health.vram_total
            track.vram_share.append(used / total if up and used is not None and total else None)
            track.latency_ms.append(health.latency_ms if up else None)
            track.vram_total = total or track.vram_total
        for gone in set(self.tracks) - seen:  # removed from the fleet: its past goes too
            del self.tracks[gone]

    def recent(self, name: str, count: int) -> tuple[float | None, ...]:
        track = self.tracks.get(name)
        if track is None:
            return ()
        values = list(track.vram_share)[-count:]
        return tuple(values)


def draw_line(
    painter: QPainter,
    rect: QRectF,
    values: Sequence[float | None],
    capacity: int,
    maximum: float,
    color: QColor,
) -> None:
    """`values` right-aligned in `rect` (`capacity` points wide), gaps where None."""
    if len(values) < 2 or maximum <= 0:
        return
    step = rect.width() / max(1, capacity - 1)
    offset = rect.right() - step * (len(values) - 1)
    painter.setPen(QPen(color, 1.5))
    line = QPolygonF()
    for number, value in enumerate(values):
        if value is None:
            if line.size() > 1:
                painter.drawPolyline(line)
            line = QPolygonF()
            continue
        y = rect.bottom() - rect.height() * max(0.0, min(1.0, value / maximum))
        line.append(QPointF(offset + number * step, y))
    if line.size() > 1:
        painter.drawPolyline(line)


class Chart(QWidget):
    """A line over the last minutes with its scale: the top value, the time span, the latest."""

    def __init__(self, title: str, unit: str, maximum: float, color: str) -> None:
        super().__init__()
        self.title, self.unit, self.maximum = title, unit, maximum
        self.color = QColor(color)
        self.values: tuple[float | None, ...] = ()
        self.stale = ""  # e.g. "offline, 3m ago": the line is the past, not the present
        self.setMinimumSize(140, 64)

    def show_values(
        self, values: Sequence[float | None], maximum: float | None = None, stale: str = ""
    ) -> None:
        self.values = tuple(values)
        if maximum is not None:
            self.maximum = maximum
        self.stale = stale
        self.update()

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        palette = self.palette()
        text = palette.windowText().color()
        muted = palette.placeholderText().color()
        known = [v for v in self.values if v is not None]
        latest = (
            f"{self.values[-1]:.0f}{self.unit}"
            if self.values and known and self.values[-1] is not None
            else "—"
        )
        header = f"{self.title}: {latest}" + (f"  ({self.stale})" if self.stale else "")
        painter.setPen(muted if self.stale else text)
        painter.drawText(self.rect().adjusted(2, 0, -2, 0), Qt.AlignmentFlag.AlignTop, header)
        plot = QRectF(self.rect()).adjusted(44, 16, -2, -14)
        painter.fillRect(plot, palette.base())
        painter.setPen(QPen(palette.mid().color(), 1))
        painter.drawRect(plot)
        small = painter.font()
        small.setPointSizeF(max(6.0, small.pointSizeF() * 0.8))
        painter.setFont(small)
        painter.setPen(muted)
        top = f"{self.maximum:.0f}{self.unit}"
        painter.drawText(QRectF(0, plot.top() - 2, 42, 12), Qt.AlignmentFlag.AlignRight, top)
        painter.drawText(QRectF(0, plot.bottom() - 10, 42, 12), Qt.AlignmentFlag.AlignRight, "0")
        span = f"{KEEP * SAMPLE_S / 60:.0f} min"
        painter.drawText(
            QRectF(plot.left(), plot.bottom() + 1, 60, 12), Qt.AlignmentFlag.AlignLeft, f"−{span}"
        )
        painter.drawText(
            QRectF(plot.right() - 40, plot.bottom() + 1, 40, 12), Qt.AlignmentFlag.AlignRight, "now"
        )
        color = muted if self.stale else self.color
        draw_line(painter, plot.adjusted(1, 1, -1, -1), self.values, KEEP, self.maximum, color)
