"""What one row of the fleet table says: its standing (state, reason, remedy) and its cells.

Pure of Qt so the words can be read and tested as they are: the model only stores them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

from app.core.config import FleetConfig, WorkerKind
from app.core.health import FIXES, Failure, WorkerHealth, WorkerState
from app.core.net import join_args
from app.core.outages import UNSTABLE_WINDOW_S
from app.services.gpus import GpuReading
from app.services.launch_plan import launchable_names
from app.services.monitor import initial_health, targets_from_config
from app.services.supervisor import InstanceState, InstanceStatus


class Column(IntEnum):
    """Name, state and reason first: they stay in view from 1024 px on."""

    STATUS = 0
    NAME = 1
    STATE = 2
    REASON = 3
    ACTIVITY = 4
    VRAM = 5
    QUEUE = 6
    DEVICE = 7
    VERSION = 8
    TYPE = 9
    ADDRESS = 10
    LATENCY = 11
    UPTIME = 12
    PROCESS = 13
    UTIL = 14


HEADERS = {
    Column.STATUS: "",
    Column.NAME: "Name",
    Column.STATE: "State",
    Column.REASON: "Why",
    Column.ACTIVITY: "VRAM, 2 min",
    Column.VRAM: "VRAM",
    Column.QUEUE: "Queue",
    Column.DEVICE: "GPU / device",
    Column.TYPE: "Type",
    Column.ADDRESS: "Address",
    Column.LATENCY: "Latency",
    Column.UPTIME: "Uptime",
    Column.PROCESS: "Process",
    Column.UTIL: "Util",
    Column.VERSION: "ComfyUI",
}
UP = (WorkerState.ONLINE, WorkerState.BUSY)
CRASHED_STATES = (InstanceState.RESTARTING, InstanceState.CRASH_LOOP, InstanceState.CRASHED)
LIGHTS = {
    InstanceState.STARTING: WorkerState.STARTING,
    InstanceState.RESTARTING: WorkerState.STARTING,
    InstanceState.CRASHED: WorkerState.CRASHED,
    InstanceState.CRASH_LOOP: WorkerState.CRASHED,
    InstanceState.STOPPED: WorkerState.STOPPED,
    InstanceState.STOPPING: WorkerState.STOPPED,
}
NOT_STARTED = "not started: ComfyFleet launches it on Start"


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
    unstable: int = 0  # its outages in the last minutes, when they make it unstable

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
            self.unstable,
        )


@dataclass(frozen=True)
class Standing:
    """How a row stands, in words: the light, one word, why, and what to do about it."""

    light: WorkerState
    word: str
    reason: str = ""
    remedy: str = ""


def standing(row: FleetRow) -> Standing:
    said = _standing(row)
    if not row.unstable:
        return said
    minutes = round(UNSTABLE_WINDOW_S / 60)
    flaps = f"{row.unstable} outages in {minutes} min"
    reason = f"{flaps}; {said.word}" + (f": {said.reason}" if said.reason else "")
    remedy = said.remedy or "its network or machine drops it: look at its log and connection"
    return Standing(said.light, "unstable", reason, remedy)


def _standing(row: FleetRow) -> Standing:
    h, instance = row.health, row.instance
    if h.state in UP:
        crash = instance.last_crash if instance and instance.restarts else None
        return Standing(h.state, h.state.value, f"last crash: {crash}" if crash else "")
    if instance is not None and instance.state not in (InstanceState.READY, InstanceState.STOPPED):
        return _instance_standing(instance)
    if h.state is WorkerState.DISABLED:
        return Standing(h.state, "disabled", "not watched", "enable it in its settings")
    if h.state is WorkerState.STARTING:
        return Standing(h.state, "checking", "the first probe is on its way")
    if row.launchable and h.failure is Failure.REFUSED:
        reason = "stopped" if instance is not None else NOT_STARTED
        return Standing(WorkerState.STOPPED, "stopped", reason, "Start it (or Start all)")
    remedy = FIXES.get(h.failure, "") if h.failure else ""
    reason = (h.error or "no answer").removesuffix(f" — {remedy}")
    return Standing(WorkerState.OFFLINE, "offline", reason, remedy)


def _instance_standing(instance: InstanceStatus) -> Standing:
    light = LIGHTS.get(instance.state, WorkerState.STARTING)
    if instance.state in CRASHED_STATES:
        reason = "; ".join(p for p in (instance.last_crash, instance.message) if p)
        bad_argument = (instance.last_crash or "").startswith("bad launch argument")
        remedy = "fix the extra args in its settings" if bad_argument else "look at its log"
        return Standing(light, instance.state.value, reason, remedy)
    if instance.state is InstanceState.STARTING:
        reason = instance.message or "launched: waiting for ComfyUI to answer"
        return Standing(light, "starting", reason)
    return Standing(light, instance.state.value, instance.message)


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


def gib(value: int) -> str:
    return f"{value / 1024**3:.1f}"


def ago(since: float | None, now: float) -> str:
    """Coarse on purpose: a fresh start from a long run, and seconds would rewrite every
    worker's cell on every tick (the tooltip has the exact time)."""
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


def is_stale(row: FleetRow) -> bool:
    """Its values are from its last answer, not live (offline, crashed, stopped…)."""
    return row.health.state not in UP and row.health.seen_at is not None


def device(row: FleetRow) -> str:
    name = (row.health.device or "").removeprefix("cuda:0 ").removesuffix(" : cudaMallocAsync")
    gpu = row.local_gpu.index if row.local_gpu else row.gpu  # (NVML's index for a UUID)
    pinned = f"GPU {gpu}" if gpu is not None else ""
    others = row.health.other_devices
    more = f"+{others} visible" if others else ""  # 0.38 lists GPUs it does not compute on
    return " · ".join(p for p in (pinned, name, more) if p) or "—"


def vram(row: FleetRow, now: float) -> str:
    h = row.health
    if not (h.vram_total and h.vram_used is not None):
        return "—"
    text = f"{gib(h.vram_used)}/{gib(h.vram_total)} GiB"
    return f"{text} · {ago(h.seen_at, now)} ago" if is_stale(row) else text


def util(row: FleetRow) -> str:
    value = row.local_gpu.utilization if row.local_gpu else None
    return "n/a" if value is None else f"{value}%"


def queue(row: FleetRow) -> str:
    value = row.health.queue_remaining
    return "—" if value is None else str(value)


def latency(row: FleetRow) -> str:
    value = row.health.latency_ms
    return "—" if value is None else f"{value:.0f} ms"


def process(row: FleetRow) -> str:
    if row.instance is None:
        return "launchable" if row.launchable else "—"
    parts = [f"pid {row.instance.pid}" if row.instance.pid else row.instance.state.value]
    if row.instance.restarts:
        parts.append(f"{row.instance.restarts} restart(s)")
    return " · ".join(parts)


TextOf = Callable[[FleetRow, float], str]
TEXTS: dict[Column, TextOf] = {
    Column.STATUS: lambda row, now: "",
    Column.NAME: lambda row, now: row.name,
    Column.STATE: lambda row, now: standing(row).word,
    Column.REASON: lambda row, now: standing(row).reason,
    Column.ACTIVITY: lambda row, now: "",
    Column.VRAM: vram,
    Column.QUEUE: lambda row, now: queue(row),
    Column.DEVICE: lambda row, now: device(row),
    Column.TYPE: lambda row, now: row.kind,
    Column.ADDRESS: lambda row, now: row.health.url,
    Column.LATENCY: lambda row, now: latency(row),
    Column.UPTIME: lambda row, now: ago(row.health.online_since, now),
    Column.PROCESS: lambda row, now: process(row),
    Column.UTIL: lambda row, now: util(row),
    Column.VERSION: lambda row, now: row.health.comfyui_version or "—",
}
STATE_ORDER = list(WorkerState)
NUMBERS: dict[Column, Callable[[FleetRow], float | int | None]] = {  # sorted as numbers
    Column.VRAM: lambda row: row.health.vram_used,
    Column.QUEUE: lambda row: row.health.queue_remaining,
    Column.LATENCY: lambda row: row.health.latency_ms,
    Column.UPTIME: lambda row: -row.health.online_since if row.health.online_since else None,
    Column.UTIL: lambda row: row.local_gpu.utilization if row.local_gpu else None,
    Column.STATUS: lambda row: STATE_ORDER.index(standing(row).light),
}


def sort_value(row: FleetRow, column: Column) -> object:
    number = NUMBERS.get(column)
    if number is None:
        return TEXTS[column](row, 0).casefold()
    value = number(row)
    return -1.0 if value is None else float(value)


def tooltip(row: FleetRow, now: float) -> str:
    h = row.health
    said = standing(row)
    lines = [row.detail, f"{h.url} — {said.word}" + (f": {said.reason}" if said.reason else "")]
    if said.remedy:
        lines.append(f"What to do: {said.remedy}")
    if h.comfyui_version:
        lines.append(f"ComfyUI {h.comfyui_version} on {h.device}")
    if h.online_since is not None:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(h.online_since))
        lines.append(f"Online since {since}")
    if h.vram_total and h.vram_free is not None:
        used = h.vram_total - h.vram_free
        share = f"({100 * used / h.vram_total:.0f}%)"
        old = f", {ago(h.seen_at, now)} ago" if is_stale(row) else ""
        lines.append(f"VRAM {gib(used)} of {gib(h.vram_total)} GiB used {share}{old}")
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
    return "\n".join(lines)
