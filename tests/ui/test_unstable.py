"""A remote or cloud worker going down or coming back is said; one that flaps is marked
unstable with its count and said once, not at every outage."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest
from PySide6.QtWidgets import QApplication

from app.core.health import WorkerHealth, WorkerState
from app.core.outages import Outages
from app.services.paths import AppPaths
from app.services.storage import ConfigStore
from app.ui.application import DesktopApp
from app.ui.row_text import Column
from tests.ui.helpers import cell


@pytest.fixture
def desktop(qapp: QApplication, saved_paths: AppPaths) -> Iterator[DesktopApp]:
    app = DesktopApp(qapp, saved_paths, ConfigStore(saved_paths.config_file).load())
    yield app
    app.instance.close()
    app.window.close()


def lan(state: WorkerState) -> WorkerHealth:
    error = "connection refused" if state is WorkerState.OFFLINE else None
    return WorkerHealth("lan-box", "remote", "http://127.0.0.20:8188", state, error=error)


def test_a_flapping_worker_is_unstable_and_said_once(desktop: DesktopApp) -> None:
    window = desktop.window
    said: list[str] = []
    window.noticeRaised.connect(lambda notice, title, text: said.append(f"{notice}: {title}"))
    window.show_health([lan(WorkerState.ONLINE)])
    for _ in range(5):
        window.show_health([lan(WorkerState.OFFLINE)])
        window.show_health([lan(WorkerState.ONLINE)])
    window.show_health([lan(WorkerState.OFFLINE)])
    assert said == [
        "worker_down: lan-box went down",
        "worker_up: lan-box is back",
        "worker_down: lan-box went down",
        "worker_up: lan-box is back",
        "worker_down: lan-box is unstable",  # the third outage in 10 minutes; then silence
    ]
    assert cell(desktop, "lan-box", Column.STATE) == "unstable"
    assert cell(desktop, "lan-box", Column.REASON).startswith(
        "6 outages in 10 min; offline: connection refused"
    )


def test_a_local_instance_is_not_said_here(desktop: DesktopApp) -> None:
    said: list[str] = []
    desktop.window.noticeRaised.connect(lambda notice, title, text: said.append(title))
    gpu1 = dataclasses.replace(lan(WorkerState.ONLINE), name="gpu1", kind="local")
    desktop.window.show_health([gpu1])
    desktop.window.show_health([dataclasses.replace(gpu1, state=WorkerState.OFFLINE)])
    assert said == []  # (its crash is said by the supervisor's state)


def test_outages_age_out_of_the_window() -> None:
    outages = Outages(threshold=3, window_s=600)
    for minute in (0, 4, 8):
        outages.went_down("lan", minute * 60.0)
    assert outages.unstable("lan", 8 * 60.0) == 3
    assert outages.unstable("lan", 10.5 * 60) == 0  # the first one is older than 10 min
    assert outages.count("lan", 10.5 * 60) == 2
