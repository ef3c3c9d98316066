"""The fleet table: a QAbstractTableModel fed by snapshots, repainting only what changed."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import IntEnum

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtGui import QColor

from app.core.config import FleetConfig, WorkerKind
from app.core.health import WorkerHealth, WorkerState
from app.core.net import join_args
from app.services.gpus import GpuReading
from app.services.launch_plan import launchable_names
from app.services.monitor import initial_health, targets_from_config
from app.services.supervisor import InstanceState, InstanceStatus

Index = QModelIndex | QPersistentModelIndex
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
    if since is None:
        return "—"
    seconds = int(now - since)
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"


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


def _or_dash(value: object, fmt: str = "{}") -> str:
    return "—" if value is None else fmt.format(value)


def texts(row: FleetRow, now: float) -> tuple[str, ...]:
    """Every column's text for a row (the status column paints a light, no text)."""
    h = row.health
    return (
        "",
        row.name,
        row.kind,
        h.url,
        _device(row),
        _vram(row),
        _util(row),
        "—" if h.queue_remaining is None else str(h.queue_remaining),
        "—" if h.latency_ms is None else f"{h.latency_ms:.0f} ms",
        _uptime(h.online_since, now),
        _process(row),
        _detail(row),
    )


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


def sort_value(row: FleetRow, column: Column) -> object:
    h = row.health
    numeric = {
        Column.VRAM: h.vram_used,
        Column.QUEUE: h.queue_remaining,
        Column.LATENCY: h.latency_ms,
        Column.UPTIME: -(h.online_since or time.time()),
        Column.UTIL: row.local_gpu.utilization if row.local_gpu else None,
        Column.STATUS: list(STATE_COLORS).index(h.state),
    }
    if column in numeric:
        value = numeric[column]
        return -1.0 if value is None else float(value)
    return texts(row, 0)[column].casefold()


def tooltip(row: FleetRow) -> str:
    h = row.health
    lines = [row.detail, f"{h.url} — {h.state.value}"]
    if h.comfyui_version:
        lines.append(f"ComfyUI {h.comfyui_version} on {h.device}")
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


COLUMNS = tuple(Column)
HANDLED_ROLES = frozenset(
    {
        Qt.ItemDataRole.DisplayRole,
        Qt.ItemDataRole.ToolTipRole,
        Qt.ItemDataRole.ForegroundRole,
        SORT_ROLE,
        VRAM_ROLE,
        STATUS_COLOR_ROLE,
    }
)
# What each cell of a row paints: its text (the light's state for STATUS), the VRAM bar's
# fill, greyed out or not. A cell whose look did not change is not repainted.
Look = tuple[tuple[object, object, bool], ...]


def look(row: FleetRow, now: float) -> Look:
    h = row.health
    greyed = h.state is WorkerState.DISABLED
    cells: list[tuple[object, object, bool]] = [(text, None, greyed) for text in texts(row, now)]
    cells[Column.STATUS] = (_light(row), None, greyed)
    cells[Column.VRAM] = (cells[Column.VRAM][0], h.vram_used, greyed)
    return tuple(cells)


class FleetTableModel(QAbstractTableModel):
    """Rows change once a second each; only the cells whose painted value changed repaint."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self._rows: list[FleetRow] = []
        self._looks: list[Look] = []
        self._positions: dict[str, int] = {}
        self._clock = clock

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(Column)

    def row(self, index: int) -> FleetRow:
        return self._rows[index]

    def rows(self) -> list[FleetRow]:
        return list(self._rows)

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> object:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return HEADERS[Column(section)]
        return None

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> object:
        if role not in HANDLED_ROLES or not index.isValid():
            return None  # the view asks for a dozen roles per cell and repaint
        number, column = index.row(), COLUMNS[index.column()]
        row = self._rows[number]
        if role == Qt.ItemDataRole.DisplayRole and column is not Column.STATUS:
            return self._looks[number][column][0]
        if role == Qt.ItemDataRole.ToolTipRole:
            return tooltip(row)
        if role == SORT_ROLE:
            return sort_value(row, column)
        if role == VRAM_ROLE and column is Column.VRAM:
            h = row.health
            return (h.vram_used, h.vram_total) if h.vram_total else None
        if role == STATUS_COLOR_ROLE and column is Column.STATUS:
            return QColor(STATE_COLORS[_light(row)])
        if role == Qt.ItemDataRole.ForegroundRole and row.health.state is WorkerState.DISABLED:
            return QColor("#80868b")
        return None

    def _now(self) -> float:
        return self._clock()

    def set_rows(self, rows: list[FleetRow]) -> None:
        """Apply a snapshot: same keys in the same order repaint only the rows that changed."""
        if [r.key for r in rows] != [r.key for r in self._rows]:
            self.beginResetModel()
            self._rows = list(rows)
            now = self._now()
            self._looks = [look(row, now) for row in rows]
            self._positions = {row.name: number for number, row in enumerate(rows)}
            self.endResetModel()
            return
        for number, (old, new) in enumerate(zip(self._rows, rows, strict=True)):
            if old != new:
                self._replace(number, new)

    def update_health(self, health: WorkerHealth) -> None:
        number = self._positions.get(health.name)
        if number is not None:  # (every probe brings a new health: no comparison needed)
            self._replace(number, replace(self._rows[number], health=health))

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
        """Uptime moves on: repaint that cell only, for rows that are up."""
        now = self._now()
        for number, row in enumerate(self._rows):
            if row.health.online_since is None:
                continue
            cells = list(self._looks[number])
            text, fill, greyed = cells[Column.UPTIME]
            cells[Column.UPTIME] = (_uptime(row.health.online_since, now), fill, greyed)
            self._looks[number] = tuple(cells)
            cell = self.index(number, Column.UPTIME)
            self.dataChanged.emit(cell, cell, [Qt.ItemDataRole.DisplayRole])

    def _replace(self, number: int, row: FleetRow) -> None:
        self._rows[number] = row
        old, new = self._looks[number], look(row, self._now())
        changed = [column for column, (a, b) in enumerate(zip(old, new, strict=True)) if a != b]
        self._looks[number] = new
        if changed:
            self.dataChanged.emit(self.index(number, changed[0]), self.index(number, changed[-1]))


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
