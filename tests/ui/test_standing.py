"""What a row says about an instance: the truth, in its own words."""

from __future__ import annotations

from app.core.health import (
    Failure,
    ProbeError,
    ProbeResult,
    SystemStats,
    WorkerHealth,
    WorkerState,
    apply_probe,
)
from app.services.supervisor import InstanceState, InstanceStatus
from app.ui.row_text import Column, FleetRow, standing
from app.ui.worker_table import cell_look

ONLINE = WorkerHealth(
    "w", "local", "http://127.0.0.1:1", WorkerState.ONLINE, vram_total=8, vram_free=2
)
STATS = SystemStats("0.3.64", "cpu", 8, 2)


def _row(
    health: WorkerHealth, instance: InstanceStatus | None = None, launchable: bool = True
) -> FleetRow:
    return FleetRow("w", "Local", None, "", health, instance=instance, launchable=launchable)


def test_one_timeout_or_5xx_changes_nothing_shown_refused_counts_at_once() -> None:
    timeout = ProbeResult(error=ProbeError(Failure.TIMEOUT, "no answer in time"))
    server = ProbeResult(error=ProbeError(Failure.SERVER_ERROR, "HTTP 500"))
    refused = ProbeResult(error=ProbeError(Failure.REFUSED, "connection refused"))
    for one_off in (timeout, server):
        once = apply_probe(ONLINE, one_off, 10.0, misses=1)
        assert once.state is WorkerState.ONLINE and once.checked_at == 10.0
        assert apply_probe(once, one_off, 11.0, misses=2).state is WorkerState.OFFLINE
    assert apply_probe(ONLINE, refused, 10.0, misses=1).state is WorkerState.OFFLINE
    back = apply_probe(ONLINE, ProbeResult(STATS, 0, 1.0), 12.0)
    assert back.seen_at == 12.0


def test_a_starting_instance_says_starting_not_offline() -> None:
    refused = WorkerHealth(
        "w",
        "local",
        "u",
        WorkerState.OFFLINE,
        error="connection refused — x",
        failure=Failure.REFUSED,
    )
    starting = InstanceStatus("w", InstanceState.STARTING, 1, pid=42)
    said = standing(_row(refused, starting))
    assert (said.light, said.word) == (WorkerState.STARTING, "starting")


def test_a_local_instance_not_started_is_grey_stopped() -> None:
    message = ProbeError(Failure.REFUSED, "connection refused").message
    refused = WorkerHealth(
        "w", "local", "u", WorkerState.OFFLINE, error=message, failure=Failure.REFUSED
    )
    said = standing(_row(refused))
    assert (said.light, said.word) == (WorkerState.STOPPED, "stopped")
    remote = standing(_row(refused, launchable=False))
    assert (remote.light, remote.word, remote.reason) == (
        WorkerState.OFFLINE,
        "offline",
        "connection refused",
    )


def test_an_offline_workers_values_are_old_greyed_with_their_age() -> None:
    gone = WorkerHealth(
        "w",
        "remote",
        "u",
        WorkerState.OFFLINE,
        error="no answer in time — x",
        failure=Failure.TIMEOUT,
        vram_total=8 * 2**30,
        vram_free=2 * 2**30,
        seen_at=1000.0,
    )
    row = _row(gone, launchable=False)
    text, _, greyed = cell_look(row, Column.VRAM, 1000.0 + 180)
    assert text == "6.0/8.0 GiB · 3m ago" and greyed
    assert cell_look(row, Column.NAME, 1180.0)[2] is False  # the name is not old
    live = _row(ONLINE, launchable=False)
    assert cell_look(live, Column.VRAM, 0.0)[2] is False
