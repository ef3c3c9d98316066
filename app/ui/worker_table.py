"""The fleet table: Qt items fed by snapshots, rewriting only the cells that changed."""

from __future__ import annotations

import operator
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, cast

from PySide6.QtCore import QEvent, QModelIndex, QSortFilterProxyModel, Qt
from PySide6.QtGui import QColor, QHelpEvent, QStandardItem, QStandardItemModel
from PySide6.QtWidgets import QTableView, QToolTip

from app.core.health import WorkerHealth, WorkerState
from app.services.gpus import GpuReading
from app.services.supervisor import InstanceStatus
from app.ui.history import FleetHistory
from app.ui.row_text import (
    HEADERS,
    TEXTS,
    Column,
    FleetRow,
    is_stale,
    sort_value,
    standing,
    tooltip,
)

SORT_ROLE = Qt.ItemDataRole.UserRole + 1
VRAM_ROLE = Qt.ItemDataRole.UserRole + 2  # (used, total) for the bar delegate
STATUS_COLOR_ROLE = Qt.ItemDataRole.UserRole + 3
HISTORY_ROLE = Qt.ItemDataRole.UserRole + 4  # recent VRAM shares for the activity delegate
ACTIVITY_POINTS = 60  # 2 minutes at the 2 s tick

COLUMNS = tuple(Column)
STATE_COLORS = {
    WorkerState.ONLINE: "#34a853",
    WorkerState.BUSY: "#1a73e8",
    WorkerState.OFFLINE: "#d93025",
    WorkerState.CRASHED: "#d93025",
    WorkerState.STARTING: "#f9ab00",
    WorkerState.STOPPED: "#9aa0a6",
    WorkerState.DISABLED: "#dadce0",
}
# The cells each health field shows in at once, besides the state (which rewrites the row).
SHOWN_IN: dict[str, tuple[Column, ...]] = {
    "url": (Column.ADDRESS,),
    "device": (Column.DEVICE,),
    "other_devices": (Column.DEVICE,),
    "comfyui_version": (Column.VERSION,),
    "vram_total": (Column.VRAM,),
    "vram_free": (Column.VRAM,),
    "queue_remaining": (Column.QUEUE,),
    "online_since": (Column.UPTIME,),
    "error": (Column.REASON,),
    "failure": (Column.STATUS, Column.STATE, Column.REASON),
}
# What moves with every probe or second is shown at the pace of tick() instead.
TICKING = (Column.LATENCY, Column.UPTIME, Column.VRAM)
# Cells that hold the last answer's values: greyed while the worker does not answer.
PAST = frozenset({Column.VRAM, Column.DEVICE, Column.QUEUE, Column.UTIL, Column.ACTIVITY})
_SHOWN = operator.attrgetter(*SHOWN_IN)
_SHOWN_CELLS = tuple(SHOWN_IN.values())


GREY = QColor("#80868b")
# What each cell of a row paints: its text (the light's state for STATUS), the VRAM bar's
# fill, greyed out or not. A cell whose look did not change is not written again.
Look = tuple[tuple[object, object, bool], ...]


def look(row: FleetRow, now: float) -> Look:
    return tuple(cell_look(row, column, now) for column in COLUMNS)


def cell_look(row: FleetRow, column: Column, now: float) -> tuple[object, object, bool]:
    greyed = row.health.state is WorkerState.DISABLED or (column in PAST and is_stale(row))
    if column is Column.STATUS:
        return (standing(row).light, None, greyed)
    fill = row.health.vram_used if column is Column.VRAM else None
    return (TEXTS[column](row, now), fill, greyed)


def cell_data(row: FleetRow, column: Column, shown: tuple[object, object, bool]) -> dict[int, Any]:
    """What one cell holds, by role."""
    value, _, greyed = shown
    data: dict[int, Any] = {
        SORT_ROLE: sort_value(row, column),
        Qt.ItemDataRole.ForegroundRole: GREY if greyed else None,
    }
    if column is Column.STATUS:
        data[STATUS_COLOR_ROLE] = QColor(STATE_COLORS[cast(WorkerState, value)])
    else:
        data[Qt.ItemDataRole.DisplayRole] = value
    if column is Column.VRAM:
        h = row.health
        bar = bool(h.vram_total) and h.vram_used is not None
        data[VRAM_ROLE] = (h.vram_used, h.vram_total, greyed) if bar else None
    return data


class FleetTableModel(QStandardItemModel):
    """The fleet's rows; what the cells show lives in Qt's own items.

    Painting and sorting then never call back into Python (with a Python `data()`, one repaint
    of the table was 25 ms of callbacks). Each update writes only the cells whose look changed;
    tooltips are made when asked (`tooltip()`, from the view).
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        super().__init__(0, len(Column))
        self.setHorizontalHeaderLabels([HEADERS[column] for column in Column])
        self._rows: list[FleetRow] = []
        self._looks: list[Look] = []
        self._positions: dict[str, int] = {}
        self._clock = clock

    def row(self, index: int) -> FleetRow:
        return self._rows[index]

    def rows(self) -> list[FleetRow]:
        return list(self._rows)

    def tooltip(self, number: int) -> str:
        return tooltip(self._rows[number], self._now())

    def _now(self) -> float:
        return self._clock()

    def set_rows(self, rows: list[FleetRow]) -> None:
        """Apply a snapshot: same keys in the same order rewrite only the cells that changed."""
        if [r.key for r in rows] != [r.key for r in self._rows]:
            self.setRowCount(0)
            self._rows = list(rows)
            now = self._now()
            self._looks = [look(row, now) for row in rows]
            self._positions = {row.name: number for number, row in enumerate(rows)}
            for row, shown in zip(rows, self._looks, strict=True):
                self.appendRow([_item(cell_data(row, c, shown[c])) for c in COLUMNS])
            return
        for number, (old, new) in enumerate(zip(self._rows, rows, strict=True)):
            if old != new:
                self._replace(number, new)

    def update_healths(self, healths: list[WorkerHealth]) -> None:
        """New probe results: only the cells of the fields that changed are looked at."""
        for health in healths:
            number = self._positions.get(health.name)
            if number is None:
                continue
            row = self._rows[number]
            old, row = row.health, row.with_health(health)
            if old.state is not health.state:
                self._replace(number, row)
                continue
            before, after = _SHOWN(old), _SHOWN(health)
            if before == after:  # most probes: only latency and checked_at moved
                self._rows[number] = row
                continue
            changed = {
                c
                for cells, a, b in zip(_SHOWN_CELLS, before, after, strict=True)
                if a != b
                for c in cells
            }
            self._replace(number, row, sorted(changed))

    def update_unstable(self, name: str, outages: int) -> None:
        number = self._positions.get(name)
        if number is not None and self._rows[number].unstable != outages:
            self._replace(number, replace(self._rows[number], unstable=outages))

    def update_instance(self, status: InstanceStatus) -> None:
        number = self._positions.get(status.name)
        if number is not None and self._rows[number].instance != status:
            self._replace(number, replace(self._rows[number], instance=status))

    def update_gpus(self, gpus: tuple[GpuReading, ...]) -> None:
        for number, row in enumerate(self._rows):
            reading = _match_gpu(row, gpus)
            if reading != row.local_gpu:
                self._replace(number, replace(row, local_gpu=reading))

    def tick(self, history: FleetHistory | None = None) -> None:
        """Uptime and an offline worker's age move on, latency with every probe: their cells
        are rewritten here, every few seconds, not for each probe (a row that goes up or down
        is rewritten whole at once); the activity lines get their new sample."""
        for number, row in enumerate(self._rows):
            self._replace(number, row, TICKING)
            if history is not None:
                recent = history.recent(row.name, ACTIVITY_POINTS)
                self.setData(self.index(number, Column.ACTIVITY), recent, HISTORY_ROLE)

    def _replace(self, number: int, row: FleetRow, columns: Sequence[Column] = COLUMNS) -> None:
        """Store a row; rewrite those of the named cells whose look changed."""
        self._rows[number] = row
        now = self._now()
        shown = list(self._looks[number])
        for column in columns:
            cell = cell_look(row, column, now)
            if cell != shown[column]:
                shown[column] = cell
                self.setItemData(self.index(number, column), cell_data(row, column, cell))
        self._looks[number] = tuple(shown)


class FleetTableView(QTableView):
    """The table, sortable by any column (config order until a header click); tooltips are
    made when the pointer rests on a row, not stored with every update."""

    def __init__(self, model: FleetTableModel) -> None:
        super().__init__()
        self.source = model
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(model)
        self.proxy.setSortRole(SORT_ROLE)
        self.setModel(self.proxy)
        self.setSortingEnabled(True)
        self.sortByColumn(-1, Qt.SortOrder.AscendingOrder)

    def source_row(self, index: QModelIndex) -> int:
        return self.proxy.mapToSource(index).row()

    def viewportEvent(self, event: QEvent) -> bool:
        if event.type() == QEvent.Type.ToolTip:
            help_event = cast(QHelpEvent, event)
            index = self.indexAt(help_event.pos())
            if index.isValid():
                text = self.source.tooltip(self.source_row(index))
                QToolTip.showText(
                    help_event.globalPos(), text, self.viewport(), self.visualRect(index)
                )
            else:
                QToolTip.hideText()
            return True
        return super().viewportEvent(event)


def _item(data: dict[int, Any]) -> QStandardItem:
    item = QStandardItem()
    item.setEditable(False)
    for role, value in data.items():
        item.setData(value, role)
    return item


def _match_gpu(row: FleetRow, gpus: tuple[GpuReading, ...]) -> GpuReading | None:
    """A local instance's GPU: by UUID or index; the master's 'auto' means GPU 0."""
    if row.kind not in ("Master", "Local") or not gpus:
        return None
    if row.health.device and row.health.device.startswith("cpu"):
        return None
    wanted = row.gpu or "auto"
    for gpu in gpus:
        if wanted in (gpu.uuid, str(gpu.index)) or (wanted == "auto" and gpu.index == 0):
            return gpu
    return None
