"""What ComfyFleet knows about each instance: states, failure classes, and the probe schedule."""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any


class WorkerState(StrEnum):
    ONLINE = "online"
    BUSY = "busy"
    OFFLINE = "offline"
    STARTING = "starting"
    STOPPED = "stopped"
    CRASHED = "crashed"
    DISABLED = "disabled"


class Failure(StrEnum):
    DNS = "dns"
    REFUSED = "refused"
    TIMEOUT = "timeout"
    TLS = "tls"
    FORBIDDEN = "forbidden"
    SERVER_ERROR = "server_error"
    NOT_COMFYUI = "not_comfyui"
    NETWORK = "network"
    BAD_ADDRESS = "bad_address"


# What most often fixes each failure, in words a user can act on.
FIXES = {
    Failure.DNS: "check the host name; a Runpod pod's proxy name only exists while it runs",
    Failure.REFUSED: "nothing listens there: start ComfyUI, check the port, and start it with "
    "--listen if it runs on another machine",
    Failure.TIMEOUT: "no answer in time: open the port in the firewall, or the machine is "
    "overloaded or asleep",
    Failure.TLS: "TLS certificate rejected: use the https proxy address, or http:// for a "
    "plain LAN worker",
    Failure.FORBIDDEN: "ComfyUI refused the request (origin check): start it with "
    "--enable-cors-header",
    Failure.SERVER_ERROR: "ComfyUI answered with an error: look at its log",
    Failure.NOT_COMFYUI: "something else answers on that port: check the address",
    Failure.NETWORK: "the network failed: check the address and the connection",
    Failure.BAD_ADDRESS: "this address cannot be used: correct the host and port in its settings",
}


@dataclass(frozen=True)
class ProbeError:
    failure: Failure
    detail: str

    @property
    def message(self) -> str:
        return f"{self.detail} — {FIXES[self.failure]}"


@dataclass(frozen=True)
class SystemStats:
    comfyui_version: str
    device: str  # the primary device: the one ComfyUI computes on
    vram_total: int
    vram_free: int
    other_devices: int = 0  # 0.38 lists every visible GPU (0.3.64: only the primary)


class NotComfyUI(ValueError):
    pass


def parse_system_stats(data: Any) -> SystemStats:
    """Read ComfyUI's /system_stats; anything else is not a ComfyUI."""
    try:
        system, devices = data["system"], data["devices"]
        device = devices[0]
        return SystemStats(
            comfyui_version=str(system.get("comfyui_version", "?")),
            device=str(device["name"]),
            vram_total=int(device["vram_total"]),
            vram_free=int(device["vram_free"]),
            other_devices=len(devices) - 1,
        )
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise NotComfyUI(f"/system_stats is not ComfyUI's ({exc.__class__.__name__})") from None


JOBS_API_SINCE = (0, 38)  # recordings/comfyui-0.38/routes.json; 0.3.64 has none


def version_tuple(version: str | None) -> tuple[int, ...]:
    """ "0.38.1" → (0, 38, 1); what is not a version → ()."""
    numbers = []
    for part in (version or "").lstrip("v").split("."):
        digits = "".join(itertools.takewhile(str.isdigit, part))
        if not digits:
            break
        numbers.append(int(digits))
    return tuple(numbers)


def has_jobs_api(version: str | None) -> bool:
    return version_tuple(version) >= JOBS_API_SINCE


def parse_queue_remaining(data: Any) -> int:
    try:
        return int(data["exec_info"]["queue_remaining"])
    except (KeyError, TypeError, ValueError):
        raise NotComfyUI("/prompt is not ComfyUI's") from None


@dataclass(frozen=True)
class ProbeResult:
    stats: SystemStats | None = None
    queue_remaining: int = 0
    latency_ms: float = 0.0
    error: ProbeError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class WorkerHealth:
    """One row of the fleet's live view; `status --json` prints exactly these fields."""

    name: str
    kind: str
    url: str
    state: WorkerState
    error: str | None = None
    failure: Failure | None = None
    comfyui_version: str | None = None
    device: str | None = None
    other_devices: int = 0
    vram_total: int | None = None
    vram_free: int | None = None
    queue_remaining: int | None = None
    latency_ms: float | None = None
    online_since: float | None = None
    checked_at: float | None = None
    pid: int | None = None
    restarts: int = 0
    last_crash: str | None = None
    seen_at: float | None = None  # the last answer: what is shown of an offline worker is that old

    @property
    def vram_used(self) -> int | None:
        if self.vram_total is None or self.vram_free is None:
            return None
        return self.vram_total - self.vram_free

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.kind,
            "url": self.url,
            "state": self.state.value,
            "error": self.error,
            "comfyui_version": self.comfyui_version,
            "device": self.device,
            "other_devices": self.other_devices,
            "vram_total": self.vram_total,
            "vram_free": self.vram_free,
            "queue_remaining": self.queue_remaining,
            "latency_ms": self.latency_ms,
            "pid": self.pid,
            "restarts": self.restarts,
            "last_crash": self.last_crash,
        }


# Failures that may be one-offs (a slow answer, a proxy's hiccup): a worker that was up goes
# offline only when the next probe fails too. Anything else (refused, DNS …) counts at once.
TRANSIENT = frozenset({Failure.TIMEOUT, Failure.SERVER_ERROR, Failure.NETWORK})


POD_STARTING = "its ComfyUI is starting: Runpod's proxy answers 502 until it listens"


def apply_probe(
    previous: WorkerHealth, result: ProbeResult, now: float, misses: int = 1, pod: bool = False
) -> WorkerHealth:
    """The next health of a worker after one probe; `misses`: failed probes in a row, this
    one included. One transient failure of a worker that was up changes nothing shown. A pod
    (`pod`) whose proxy answers 502 is starting, not down: nothing listens on its port yet."""
    if result.error is not None or result.stats is None:
        error = result.error or ProbeError(Failure.NETWORK, "no answer")
        up = previous.state in (WorkerState.ONLINE, WorkerState.BUSY)
        if up and misses < 2 and error.failure in TRANSIENT:
            return replace(previous, checked_at=now)
        starting = pod and error.detail == "HTTP 502" and not up
        return replace(
            previous,
            state=WorkerState.STARTING if starting else WorkerState.OFFLINE,
            error=POD_STARTING if starting else error.message,
            failure=error.failure,
            latency_ms=None,
            online_since=None,
            queue_remaining=None,
            checked_at=now,
        )
    stats = result.stats
    up = previous.state in (WorkerState.ONLINE, WorkerState.BUSY)
    return WorkerHealth(  # every field (replace() costs twice as much, once a second per worker)
        name=previous.name,
        kind=previous.kind,
        url=previous.url,
        state=WorkerState.BUSY if result.queue_remaining > 0 else WorkerState.ONLINE,
        error=None,
        failure=None,
        comfyui_version=stats.comfyui_version,
        device=stats.device,
        other_devices=stats.other_devices,
        vram_total=stats.vram_total,
        vram_free=stats.vram_free,
        queue_remaining=result.queue_remaining,
        latency_ms=round(result.latency_ms, 1),
        online_since=previous.online_since if up and previous.online_since else now,
        checked_at=now,
        pid=previous.pid,
        restarts=previous.restarts,
        last_crash=previous.last_crash,
        seen_at=now,
    )


@dataclass(frozen=True)
class ProbeSchedule:
    idle_s: float = 2.0
    busy_s: float = 1.0
    offline_max_s: float = 30.0
    jitter: float = 0.1

    def next_delay(self, health: WorkerHealth, misses: int, rng: random.Random) -> float:
        if health.state is WorkerState.OFFLINE:
            base = min(self.offline_max_s, self.idle_s * (2 ** max(0, misses - 1)))
        elif health.state is WorkerState.BUSY or misses:  # (a one-off miss is soon checked)
            base = self.busy_s
        else:
            base = self.idle_s
        return float(base * (1 + rng.uniform(-self.jitter, self.jitter)))
