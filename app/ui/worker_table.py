"""The fleet table: a QAbstractTableModel fed by snapshots, repainting only changed rows."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtGui import QBrush, QColor

from app.core.config import FleetConfig, WorkerKind
from app.core.net import base_url, join_args

Index = QModelIndex | QPersistentModelIndex


class Column(IntEnum):
    STATUS = 0
    NAME = 1
    TYPE = 2
    ADDRESS = 3
    GPU = 4
    DETAIL = 5


HEADERS = {
    Column.STATUS: "",
    Column.NAME: "Name",
    Column.TYPE: "Type",
    Column.ADDRESS: "Address",
    Column.GPU: "GPU",
    Column.DETAIL: "State",
}


@dataclass(frozen=True)
class FleetRow:
    key: str
    name: str
    kind: str
    address: str
    gpu: str
    state: str
    tooltip: str
    enabled: bool = True


def rows_from_config(config: FleetConfig) -> list[FleetRow]:
    master = config.master
    launch = (
        f"launched from {master.comfyui_dir}"
        if master.launched_by_app
        else "already running elsewhere; ComfyFleet connects to it"
    )
    rows = [
        FleetRow(
            key="master",
            name="master",
            kind="Master",
            address=base_url(master.host, master.port),
            gpu=master.gpu or ("auto" if master.launched_by_app else "—"),
            state="not checked yet",
            tooltip=f"The ComfyUI master, {launch}",
        )
    ]
    for worker in config.workers:
        local = worker.kind is WorkerKind.LOCAL
        extra = f"\nExtra args: {join_args(worker.extra_args)}" if worker.extra_args else ""
        rows.append(
            FleetRow(
                key=f"worker:{worker.name}",
                name=worker.name,
                kind=worker.kind.value.capitalize(),
                address=base_url(worker.host, worker.port, worker.kind is WorkerKind.CLOUD),
                gpu=(worker.gpu or "auto") if local else "—",
                state="not checked yet" if worker.enabled else "disabled",
                tooltip=f"{worker.kind.value.capitalize()} worker {worker.name}{extra}",
                enabled=worker.enabled,
            )
        )
    return rows


class FleetTableModel(QAbstractTableModel):
    def __init__(self) -> None:
        super().__init__()
        self._rows: list[FleetRow] = []

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(Column)

    def row(self, index: int) -> FleetRow:
        return self._rows[index]

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> object:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return HEADERS[Column(section)]
        return None

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> object:
        if not index.isValid():
            return None
        row = self._rows[index.row()]
        column = Column(index.column())
        if role == Qt.ItemDataRole.DisplayRole:
            return {
                Column.STATUS: "",
                Column.NAME: row.name,
                Column.TYPE: row.kind,
                Column.ADDRESS: row.address,
                Column.GPU: row.gpu,
                Column.DETAIL: row.state,
            }[column]
        if role == Qt.ItemDataRole.ToolTipRole:
            return row.tooltip
        if role == Qt.ItemDataRole.DecorationRole and column is Column.STATUS:
            return QColor("#9aa0a6") if row.enabled else QColor("#d0d3d6")
        if role == Qt.ItemDataRole.ForegroundRole and not row.enabled:
            return QBrush(QColor("#80868b"))
        return None

    def set_rows(self, rows: list[FleetRow]) -> None:
        """Apply a snapshot: same keys in the same order repaint only the rows that changed."""
        if [r.key for r in rows] != [r.key for r in self._rows]:
            self.beginResetModel()
            self._rows = list(rows)
            self.endResetModel()
            return
        for number, (old, new) in enumerate(zip(self._rows, rows, strict=True)):
            if old != new:
                self._rows[number] = new
                last = self.columnCount() - 1
                self.dataChanged.emit(self.index(number, 0), self.index(number, last))
