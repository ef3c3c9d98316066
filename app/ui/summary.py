"""The fleet in one line, for the status bar and the tray."""

from __future__ import annotations

from collections.abc import Iterable

from app.core.health import WorkerHealth, WorkerState

UP = (WorkerState.ONLINE, WorkerState.BUSY)


def fleet_summary(healths: Iterable[WorkerHealth]) -> str:
    """ "master online · 3 of 4 workers online · 1 busy · VRAM 12.1/48.0 GiB free"."""
    every = list(healths)
    master = next((h for h in every if h.kind == "master"), None)
    workers = [h for h in every if h.kind != "master" and h.state is not WorkerState.DISABLED]
    online = [h for h in workers if h.state in UP]
    busy = sum(h.state is WorkerState.BUSY for h in every)
    parts = []
    if master is not None:
        parts.append(f"master {master.state.value}")
    parts.append(f"{len(online)} of {len(workers)} workers online" if workers else "no workers yet")
    if busy:
        parts.append(f"{busy} busy")
    live = [h for h in every if h.state in UP and h.vram_total and h.vram_free is not None]
    if live:
        free = sum(h.vram_free or 0 for h in live) / 1024**3
        total = sum(h.vram_total or 0 for h in live) / 1024**3
        parts.append(f"VRAM {free:.1f}/{total:.1f} GiB free")
    return " · ".join(parts)


def workers_online(healths: Iterable[WorkerHealth]) -> str:
    """The tray's count: workers, not the master ("3/4 workers online")."""
    every = [h for h in healths if h.kind != "master"]
    workers = [h for h in every if h.state is not WorkerState.DISABLED]
    online = sum(h.state in UP for h in workers)
    if workers:
        return f"{online}/{len(workers)} workers online"
    return "no workers enabled" if every else "no workers yet"
