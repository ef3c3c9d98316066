"""The fleet table: Qt items fed by snapshots, rewriting only the cells that changed."""

from __future__ import annotations

import operator
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from enum import IntEnum
from typing import Any, cast

from PySide6.QtCore import QEvent, QModelIndex, QSortFilterProxyModel, Qt
from PySide6.QtGui import QColor, QHelpEvent, QStandardItem, QStandardItemModel
from PySide6.QtWidgets import QTableView, QToolTip

from app.core.config import FleetConfig, WorkerKind
from app.core.health import WorkerHealth, WorkerState
from app.core.net import join_args
from app.services.gpus import GpuReading
from app.services.launch_plan import launchable_names
from app.services.monitor import initial_health, targets_from_config
from app.services.supervisor import InstanceState, InstanceStatus

SORT_ROLE = Qt.ItemDataRole.UserRole + 1
VRAM_ROLE = Qt.ItemDataRole.UserRole + 2  # (used, total) for the bar delegate
STATUS_COLOR_ROLE = Qt.ItemDataRole.UserRole + 3


class Column(IntEnum):
    STATUS = 0
    NAME = 1
    TYPE = 2
    ADDRESS = 3
    DEVICE = 4
    VRAM = 5
    UTIL = 6
    QUEUE = 7
    LATENCY = 8
    UPTIME = 9
    PROCESS = 10
    DETAIL = 11


COLUMNS = tuple(Column)
HEADERS = {
    Column.STATUS: "",
    Column.NAME: "Name",
    Column.TYPE: "Type",
    Column.ADDRESS: "Address",
    Column.DEVICE: "GPU / device",
    Column.VRAM: "VRAM",
    Column.UTIL: "Util",
    Column.QUEUE: "Queue",
    Column.LATENCY: "Latency",
    Column.UPTIME: "Uptime",
    Column.PROCESS: "Process",
    Column.DETAIL: "State",
}
CRASHED_STATES = (InstanceState.RESTARTING, InstanceState.CRASH_LOOP, InstanceState.CRASHED)
LIGHTS = {
    InstanceState.STARTING: WorkerState.STARTING,
    InstanceState.RESTARTING: WorkerState.STARTING,
    InstanceState.CRASHED: WorkerState.CRASHED,
    InstanceState.CRASH_LOOP: WorkerState.CRASHED,
    InstanceState.STOPPED: WorkerState.STOPPED,
    InstanceState.STOPPING: WorkerState.STOPPED,
}
STATE_COLORS = {
    WorkerState.ONLINE: "#34a853",
    WorkerState.BUSY: "#1a73e8",
    WorkerState.OFFLINE: "#d93025",
    WorkerState.CRASHED: "#d93025",
    WorkerState.STARTING: "#f9ab00",
    WorkerState.STOPPED: "#9aa0a6",
    WorkerState.DISABLED: "#dadce0",
}


@dataclass(frozen=True)
class FleetRow:
    name: str
    kind: str
    gpu: str | None  # the configured GPU of a local instance
    detail: str  # what the tooltip says about the configuration
    health: WorkerHealth
    local_gpu: GpuReading | None = None
    instance: InstanceStatus | None = None  # set for instances ComfyFleet launches
    launchable: bool = False

    @property
    def key(self) -> str:
        return self.name

    def with_health(self, health: WorkerHealth) -> FleetRow:
        """replace(row, health=...), built directly: it runs for every probe of every worker."""
        return FleetRow(
            self.name,
            self.kind,
            self.gpu,
            self.detail,
            health,
            self.local_gpu,
            self.instance,
            self.launchable,
        )


def rows_from_config(config: FleetConfig) -> list[FleetRow]:
    master = config.master
    launch = (
        f"launched from {master.comfyui_dir}"
        if master.launched_by_app
        else "already running; ComfyFleet connects to it"
    )
    rows = []
    launchable = set(launchable_names(config))
    for target in targets_from_config(config):
        if target.kind == "master":
            rows.append(
                FleetRow(
                    "master",
                    "Master",
                    master.gpu,
                    f"The master, {launch}",
                    initial_health(target),
                    launchable="master" in launchable,
                )
            )
            continue
        worker = config.worker(target.name)
        assert worker is not None
        extra = f"\nExtra args: {join_args(worker.extra_args)}" if worker.extra_args else ""
        local = worker.kind is WorkerKind.LOCAL
        rows.append(
            FleetRow(
                worker.name,
                worker.kind.value.capitalize(),
                (worker.gpu or "auto") if local else None,
                f"{worker.kind.value.capitalize()} worker {worker.name}{extra}",
                initial_health(target),
                launchable=worker.name in launchable,
            )
        )
    return rows


def _gib(value: int) -> str:
    return f"{value / 1024**3:.1f}"


def _uptime(since: float | None, now: float) -> str:
    """Coarse on purpose: it tells a fresh restart from a long run (the tooltip has the exact
    time), and seconds would rewrite the cell of every worker on every tick."""
    if since is None:
        return "—"
    seconds = int(now - since)
    if seconds < 60:
        return "<1m"
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 86400:
        return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d {seconds % 86400 // 3600:02d}h"


def _device(row: FleetRow) -> str:
    device = (row.health.device or "").removeprefix("cuda:0 ").removesuffix(" : cudaMallocAsync")
    pinned = f"GPU {row.gpu}" if row.gpu else ""
    return " · ".join(p for p in (pinned, device) if p) or "—"


def _vram(row: FleetRow) -> str:
    h = row.health
    if h.vram_total and h.vram_used is not None:
        return f"{_gib(h.vram_used)}/{_gib(h.vram_total)} GiB"
    return "—"


def _util(row: FleetRow) -> str:
    util = row.local_gpu.utilization if row.local_gpu else None
    return "n/a" if util is None else f"{util}%"


def _queue(row: FleetRow) -> str:
    queue = row.health.queue_remaining
    return "—" if queue is None else str(queue)


def _latency(row: FleetRow) -> str:
    latency = row.health.latency_ms
    return "—" if latency is None else f"{latency:.0f} ms"


def _process(row: FleetRow) -> str:
    if row.instance is None:
        return "launchable" if row.launchable else "—"
    parts = [f"pid {row.instance.pid}" if row.instance.pid else row.instance.state.value]
    if row.instance.restarts:
        parts.append(f"{row.instance.restarts} restart(s)")
    return " · ".join(parts)


def _detail(row: FleetRow) -> str:
    """The health when it is up; else what the supervisor knows (crash, restart, loop)."""
    h, instance = row.health, row.instance
    up = h.state in (WorkerState.ONLINE, WorkerState.BUSY)
    if instance is not None and not up and instance.state is not InstanceState.READY:
        text = instance.state.value
        if instance.last_crash and instance.state in CRASHED_STATES:
            text += f": {instance.last_crash}"
        return f"{text} — {instance.message}" if instance.message else text
    crash = f" — last crash: {instance.last_crash}" if instance and instance.last_crash else ""
    return f"{h.state.value}: {h.error}{crash}" if h.error else f"{h.state.value}{crash}"


TextOf = Callable[[FleetRow, float], str]
TEXTS: dict[Column, TextOf] = {
    Column.STATUS: lambda row, now: "",
    Column.NAME: lambda row, now: row.name,
    Column.TYPE: lambda row, now: row.kind,
    Column.ADDRESS: lambda row, now: row.health.url,
    Column.DEVICE: lambda row, now: _device(row),
    Column.VRAM: lambda row, now: _vram(row),
    Column.UTIL: lambda row, now: _util(row),
    Column.QUEUE: lambda row, now: _queue(row),
    Column.LATENCY: lambda row, now: _latency(row),
    Column.UPTIME: lambda row, now: _uptime(row.health.online_since, now),
    Column.PROCESS: lambda row, now: _process(row),
    Column.DETAIL: lambda row, now: _detail(row),
}
NUMBERS: dict[Column, Callable[[FleetRow], float | int | None]] = {  # sorted as numbers
    Column.VRAM: lambda row: row.health.vram_used,
    Column.QUEUE: lambda row: row.health.queue_remaining,
    Column.LATENCY: lambda row: row.health.latency_ms,
    Column.UPTIME: lambda row: -row.health.online_since if row.health.online_since else None,
    Column.UTIL: lambda row: row.local_gpu.utilization if row.local_gpu else None,
    Column.STATUS: lambda row: list(STATE_COLORS).index(row.health.state),
}
# The cells each health field shows in at once, besides the state (which can grey a whole row).
SHOWN_IN = {
    "url": Column.ADDRESS,
    "device": Column.DEVICE,
    "vram_total": Column.VRAM,
    "vram_free": Column.VRAM,
    "queue_remaining": Column.QUEUE,
    "online_since": Column.UPTIME,
    "error": Column.DETAIL,
}
# What moves with every probe or second is shown at the pace of tick() instead.
TICKING = (Column.LATENCY, Column.UPTIME)
_SHOWN = operator.attrgetter(*SHOWN_IN)
_SHOWN_CELLS = tuple(SHOWN_IN.values())


def sort_value(row: FleetRow, column: Column) -> object:
    number = NUMBERS.get(column)
    if number is None:
        return TEXTS[column](row, 0).casefold()
    value = number(row)
    return -1.0 if value is None else float(value)


def tooltip(row: FleetRow) -> str:
    h = row.health
    lines = [row.detail, f"{h.url} — {h.state.value}"]
    if h.comfyui_version:
        lines.append(f"ComfyUI {h.comfyui_version} on {h.device}")
    if h.online_since is not None:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(h.online_since))
        lines.append(f"Online since {since}")
    if h.vram_total and h.vram_free is not None:
        used = h.vram_total - h.vram_free
        lines.append(
            f"VRAM {_gib(used)} of {_gib(h.vram_total)} GiB used ({100 * used / h.vram_total:.0f}%)"
        )
    if row.local_gpu is not None:
        g = row.local_gpu
        temp = "n/a" if g.temperature is None else f"{g.temperature} °C"
        power = "n/a" if g.power_w is None else f"{g.power_w:.0f} W"
        lines.append(f"{g.name} ({g.pci_bus_id}): {temp}, {power}")
    if row.instance is not None:
        i = row.instance
        lines.append(
            f"{i.state.value}, PID {i.pid or '—'}, {i.restarts} restart(s); log: {i.log_file}"
        )
    if h.error:
        lines.append(h.error)
    return "\n".join(lines)


GREY = QColor("#80868b")
# What each cell of a row paints: its text (the light's state for STATUS), the VRAM bar's
# fill, greyed out or not. A cell whose look did not change is not written again.
Look = tuple[tuple[object, object, bool], ...]


def look(row: FleetRow, now: float) -> Look:
    return tuple(cell_look(row, column, now) for column in COLUMNS)


def cell_look(row: FleetRow, column: Column, now: float) -> tuple[object, object, bool]:
    greyed = row.health.state is WorkerState.DISABLED
    if column is Column.STATUS:
        return (_light(row), None, greyed)
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
        data[VRAM_ROLE] = (h.vram_used, h.vram_total) if h.vram_total else None
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
        return tooltip(self._rows[number])

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
            changed = {c for c, a, b in zip(_SHOWN_CELLS, before, after, strict=True) if a != b}
            self._replace(number, row, sorted(changed))

    def update_instance(self, status: InstanceStatus) -> None:
        number = self._positions.get(status.name)
        if number is not None and self._rows[number].instance != status:
            self._replace(number, replace(self._rows[number], instance=status))

    def update_gpus(self, gpus: tuple[GpuReading, ...]) -> None:
        for number, row in enumerate(self._rows):
            reading = _match_gpu(row, gpus)
            if reading != row.local_gpu:
                self._replace(number, replace(row, local_gpu=reading))

    def tick(self) -> None:
        """Uptime moves on and latency with every probe: their cells are rewritten here, every
        few seconds, not for each probe (a row that goes up or down is rewritten whole at once)."""
        for number, row in enumerate(self._rows):
            self._replace(number, row, TICKING)

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


def _light(row: FleetRow) -> WorkerState:
    instance = row.instance
    if instance is None or row.health.state in (WorkerState.ONLINE, WorkerState.BUSY):
        return row.health.state
    return LIGHTS.get(instance.state, row.health.state)


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
