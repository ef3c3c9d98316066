from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterator

import pytest
from PySide6.QtCore import QEvent, Qt
from PySide6.QtGui import QHelpEvent
from PySide6.QtWidgets import QApplication, QLabel, QSystemTrayIcon, QToolTip
from pytestqt.qtbot import QtBot

from app.core.config import FleetConfig
from app.core.health import Failure, WorkerHealth, WorkerState
from app.services.paths import AppPaths
from app.services.storage import ConfigStore
from app.ui import worker_table
from app.ui.application import DesktopApp
from app.ui.row_text import Column, FleetRow, rows_from_config
from app.ui.single_instance import activate_running, instance_key
from app.ui.worker_table import SORT_ROLE, VRAM_ROLE, FleetTableModel


def _cells(app: DesktopApp, column: Column) -> list[str]:
    model = app.window.model
    return [model.data(model.index(r, column)) for r in range(model.rowCount())]


@pytest.fixture
def desktop(qapp: QApplication, saved_paths: AppPaths) -> Iterator[DesktopApp]:
    app = DesktopApp(qapp, saved_paths, ConfigStore(saved_paths.config_file).load())
    yield app
    app.instance.close()
    app.window.set_close_to_tray(False)
    app.window.close()
    if app.tray is not None:
        app.tray.hide()


def test_window_lists_master_then_workers(desktop: DesktopApp, qtbot: QtBot) -> None:
    desktop.window.show()
    qtbot.waitExposed(desktop.window)
    assert _cells(desktop, Column.NAME) == ["master", "gpu1", "lan-box", "runpod"]
    assert _cells(desktop, Column.TYPE) == ["Master", "Local", "Remote", "Cloud"]
    assert _cells(desktop, Column.ADDRESS) == [
        "http://127.0.0.1:8188",
        "http://127.0.0.1:8189",
        "http://127.0.0.20:8188",
        "https://pod-a.invalid",
    ]
    assert _cells(desktop, Column.DEVICE) == ["GPU 0", "GPU 1", "—", "—"]
    assert _cells(desktop, Column.STATE) == ["checking", "checking", "checking", "disabled"]
    assert not desktop.window.getting_started.isVisible()
    assert desktop.window.table.model().sourceModel() is desktop.window.model


def test_first_screen_guides_when_nothing_is_set_up(
    qapp: QApplication, app_paths: AppPaths, qtbot: QtBot
) -> None:
    app = DesktopApp(qapp, app_paths, ConfigStore(app_paths.config_file).load())
    try:
        app.window.show()
        qtbot.waitExposed(app.window)
        assert app.window.getting_started.isVisible()
        assert app.window.model.rowCount() == 1
    finally:
        app.instance.close()
        app.window.close()


def test_problem_banner_names_the_backup(
    qapp: QApplication, app_paths: AppPaths, qtbot: QtBot
) -> None:
    app_paths.config_file.parent.mkdir(parents=True, exist_ok=True)
    app_paths.config_file.write_text("{broken")
    loaded = ConfigStore(app_paths.config_file).load()
    app = DesktopApp(qapp, app_paths, loaded)
    try:
        app.window.show()
        assert app.window.problem.isVisible()
        assert loaded.backup is not None and loaded.backup.exists()
    finally:
        app.instance.close()
        app.window.close()


def test_a_config_path_that_is_a_folder_opens_on_defaults_and_says_so(
    qapp: QApplication, app_paths: AppPaths
) -> None:
    from app.ui.application import load_or_explain

    app_paths.config_file.mkdir(parents=True)
    app = DesktopApp(qapp, app_paths, load_or_explain(ConfigStore(app_paths.config_file)))
    try:
        app.window.show()
        assert app.window.problem.isVisible()
        label = app.window.problem.findChild(QLabel)
        assert label is not None and "is a folder, not a config file" in label.text()
    finally:
        app.instance.close()
        app.window.close()


def test_without_tray_closing_the_window_quits(desktop: DesktopApp, qapp: QApplication) -> None:
    assert not QSystemTrayIcon.isSystemTrayAvailable()  # offscreen has no tray host
    assert desktop.tray is None
    desktop.window.show()
    assert desktop.window.close()  # accepted, and the app is asked to quit
    assert desktop.quit_requested.is_set()


def test_with_tray_closing_hides_and_tray_menu_works(
    qapp: QApplication, saved_paths: AppPaths, monkeypatch: pytest.MonkeyPatch, qtbot: QtBot
) -> None:
    monkeypatch.setattr(QSystemTrayIcon, "isSystemTrayAvailable", staticmethod(lambda: True))
    app = DesktopApp(qapp, saved_paths, ConfigStore(saved_paths.config_file).load())
    told: list[str] = []
    app.window.noticeRaised.connect(lambda notice, title, text: told.append(title))
    try:
        assert app.tray is not None
        app.window.show()
        qtbot.waitExposed(app.window)
        app.window.close()
        assert not app.window.isVisible()
        assert told == ["ComfyFleet is still running"]  # said the first time only
        app.window.show()
        app.window.close()
        assert told == ["ComfyFleet is still running"]
        app.tray.menu.aboutToShow.emit()
        labels = [a.text() for a in app.tray.menu.actions() if not a.isSeparator()]
        assert labels == [
            "Show ComfyFleet",
            "Open ComfyUI in browser",
            "Start all",
            "Stop all",
            "Start tunnel",
            "Quit",
        ]
        app.tray.menu.actions()[0].trigger()
        assert app.window.isVisible()
        app.tray.menu.aboutToShow.emit()
        assert app.tray.menu.actions()[0].text() == "Hide ComfyFleet"
        assert not app.quit_requested.is_set()
        app.tray.menu.actions()[-1].trigger()  # Quit
        assert app.quit_requested.is_set() and not app.window.isVisible()
    finally:
        app.instance.close()
        app.tray.hide() if app.tray else None
        app.window.set_close_to_tray(False)
        app.window.close()


def test_second_launch_activates_the_running_window(desktop: DesktopApp, qtbot: QtBot) -> None:
    desktop.window.hide()
    assert activate_running(instance_key(desktop.paths.config_file))
    qtbot.waitUntil(desktop.window.isVisible, timeout=3000)


def test_no_instance_means_no_activation(app_paths: AppPaths, qapp: QApplication) -> None:
    assert not activate_running(instance_key(app_paths.config_file), timeout_ms=200)


def test_geometry_is_remembered(qapp: QApplication, saved_paths: AppPaths, qtbot: QtBot) -> None:
    first = DesktopApp(qapp, saved_paths, ConfigStore(saved_paths.config_file).load())
    first.window.show()
    first.window.resize(760, 540)
    qtbot.waitUntil(lambda: first.window.width() == 760)
    first.window.close()
    first.instance.close()
    second = DesktopApp(qapp, saved_paths, ConfigStore(saved_paths.config_file).load())
    try:
        assert (second.window.width(), second.window.height()) == (760, 540)
    finally:
        second.instance.close()
        second.window.close()


def test_updates_rewrite_only_the_cells_that_changed(
    fleet_config: FleetConfig, desktop: DesktopApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = desktop.window.model
    written: list[tuple[int, int]] = []
    model.dataChanged.connect(lambda a, b, *_: written.append((a.row(), a.column())))
    rows = rows_from_config(fleet_config)
    changed = list(rows)
    changed[2] = dataclasses.replace(
        rows[2], health=dataclasses.replace(rows[2].health, state=WorkerState.ONLINE)
    )
    model.set_rows(changed)
    assert {row for row, _ in written} == {2}
    assert model.data(model.index(2, Column.STATE)) == "online"
    assert model.data(model.index(1, Column.STATE)) == "checking"
    assert model.headerData(Column.NAME, Qt.Orientation.Horizontal) == "Name"

    written.clear()
    gpu1 = dataclasses.replace(model.row(1).health, queue_remaining=3, latency_ms=12.0)
    model.update_healths([gpu1])
    assert sorted(written) == [(1, Column.QUEUE)]  # latency moves with every probe: at the tick
    model.tick()
    assert sorted(written) == [(1, Column.QUEUE), (1, Column.LATENCY)]
    assert model.data(model.index(1, Column.LATENCY)) == "12 ms"
    written.clear()
    looked: list[Column] = []
    look = worker_table.cell_look
    monkeypatch.setattr(
        worker_table, "cell_look", lambda row, c, now: looked.append(c) or look(row, c, now)
    )
    model.update_healths([dataclasses.replace(gpu1, checked_at=5.0)])  # nothing shown changed
    assert written == [] and looked == []  # not even looked at: most probes change nothing
    assert model.row(1).health.checked_at == 5.0


def test_a_row_with_a_new_health_keeps_every_other_field() -> None:
    row = FleetRow(**{f.name: object() for f in dataclasses.fields(FleetRow)})  # all set
    health = WorkerHealth("w", "remote", "http://w:1", WorkerState.ONLINE)
    assert row.with_health(health) == dataclasses.replace(row, health=health)


def test_cells_updated_field_by_field_match_a_full_repaint(fleet_config: FleetConfig) -> None:
    """update_healths looks only at the cells of the fields that changed (SHOWN_IN), tick() at
    the moving ones: after random changes and a tick every cell must read as a model filled
    from scratch reads."""
    rng = random.Random(5)
    model = FleetTableModel(clock=lambda: 1000.0)
    model.set_rows(rows_from_config(fleet_config))
    choices = {
        "state": list(WorkerState),
        "url": ["http://a:1", "http://b:2"],
        "device": [None, "cuda:0 NVIDIA H200 : cudaMallocAsync", "cpu"],
        "vram_total": [None, 8 * 2**30, 141 * 2**30],
        "vram_free": [None, 2**30, 5 * 2**30],
        "queue_remaining": [None, 0, 4],
        "latency_ms": [None, 0.4, 12.6, 250.0],
        "online_since": [None, 10.0, 900.0],
        "error": [None, "refused — start ComfyUI"],
        "failure": [None, Failure.REFUSED, Failure.TIMEOUT],
        "seen_at": [None, 500.0, 990.0],
        "checked_at": [1.0, 2.0],
    }
    for _ in range(300):
        number = rng.randrange(model.rowCount())
        changes = {f: rng.choice(v) for f, v in choices.items() if rng.random() < 0.3}
        model.update_healths([dataclasses.replace(model.row(number).health, **changes)])
    model.tick()
    fresh = FleetTableModel(clock=lambda: 1000.0)
    fresh.set_rows(model.rows())
    for row in range(model.rowCount()):
        for column in Column:
            for role in (Qt.ItemDataRole.DisplayRole, SORT_ROLE, VRAM_ROLE):
                got, want = model.index(row, column).data(role), fresh.index(row, column).data(role)
                assert got == want, (row, column, role)


def test_tick_rewrites_only_the_moving_cells_that_changed(fleet_config: FleetConfig) -> None:
    now = [1000.0]
    model = FleetTableModel(clock=lambda: now[0])
    model.set_rows(rows_from_config(fleet_config))
    model.update_healths([dataclasses.replace(model.row(2).health, online_since=900.0)])
    assert model.data(model.index(2, Column.UPTIME)) == "1m"
    written: list[tuple[int, int]] = []
    model.dataChanged.connect(lambda a, b, *_: written.append((a.row(), a.column())))
    now[0] = 4600.0
    model.tick()
    assert written == [(2, Column.UPTIME)]
    assert model.data(model.index(2, Column.UPTIME)) == "1h 01m"
    now[0] = 4615.0
    model.tick()  # the same minute: nothing to rewrite
    assert written == [(2, Column.UPTIME)]
    for up, shown in ((59, "<1m"), (3599, "59m"), (86400 + 2 * 3600 + 5, "1d 02h")):
        now[0] = 900.0 + up
        model.tick()
        assert model.data(model.index(2, Column.UPTIME)) == shown
    assert "Online since " in model.tooltip(2)


def test_tooltips_are_made_when_asked(desktop: DesktopApp, qtbot: QtBot) -> None:
    desktop.window.show()
    qtbot.waitExposed(desktop.window)
    table = desktop.window.table
    index = table.model().index(2, Column.NAME)
    event = QHelpEvent(
        QEvent.Type.ToolTip,
        table.visualRect(index).center(),
        table.viewport().mapToGlobal(table.visualRect(index).center()),
    )
    assert table.viewportEvent(event)
    assert "lan-box" in QToolTip.text()
    assert "http://127.0.0.20:8188" in QToolTip.text()


def test_simulation_is_labelled_in_the_title(qapp: QApplication, saved_paths: AppPaths) -> None:
    app = DesktopApp(
        qapp, saved_paths, ConfigStore(saved_paths.config_file).load(), simulation=True
    )
    try:
        assert "Simulation" in app.window.windowTitle()
        app.window.show()
        assert app.window.simulation.isVisible()
    finally:
        app.instance.close()
        app.window.close()


def test_model_data_keeps_none_alive(desktop: DesktopApp) -> None:
    """PySide6 6.12.0 dropped a reference to None on every empty data() answer: the app
    crashed at exit once None's count ran out (Python 3.11). Guarded by the version pin."""
    import sys

    model = desktop.window.model
    before = sys.getrefcount(None)
    for _ in range(200):
        for row in range(model.rowCount()):
            for column in range(model.columnCount()):
                for role in range(0, 14):
                    model.index(row, column).data(role)
    assert sys.getrefcount(None) >= before - 50


def test_a_damaged_queue_database_opens_the_window_and_says_so(
    qapp: QApplication, app_paths: AppPaths
) -> None:
    """The window opens (it used to stop on sqlite3's DatabaseError), the banner says what is
    wrong, and the file is left as it was."""
    database = app_paths.data_dir / "queue.db"
    database.parent.mkdir(parents=True, exist_ok=True)
    database.write_bytes(b"not a database\n" * 50)
    app = DesktopApp(qapp, app_paths, ConfigStore(app_paths.config_file).load())
    try:
        app.window.show()
        assert app.window.problem.isVisible()
        label = app.window.problem.findChild(QLabel)
        assert label is not None and label.text().startswith("Fleet queue: the queue's database")
        assert "is damaged" in label.text() and "for this session only" in label.text()
        assert database.read_bytes() == b"not a database\n" * 50
        assert app.queue.paths.db != database
    finally:
        app.instance.close()
        app.window.close()
