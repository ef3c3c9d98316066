"""The window by keyboard and menus: every action in a menu with its shortcut, each key
reaching its action (QTest key events), Ctrl+Q quitting, Tab in and out of the table, a row's
context menu, Open in browser (a URL handler stands in for the browser), Copy reason, and a
first window that fits the screen."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from PySide6.QtCore import QObject, QSize, Qt, QUrl, Slot
from PySide6.QtGui import QDesktopServices, QGuiApplication, QKeySequence
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QToolButton
from pytestqt.qtbot import QtBot

from app.ui.application import DesktopApp
from app.ui.main_window import first_size
from app.ui.menus import MENUS
from app.ui.row_text import Column
from app.ui.tray import FleetTray
from tests.ui.helpers import activate, select


class Browser(QObject):
    """Takes the URLs QDesktopServices.openUrl would give the user's browser."""

    def __init__(self) -> None:
        super().__init__()
        self.opened: list[str] = []

    @Slot(QUrl)
    def open(self, url: QUrl) -> None:
        self.opened.append(url.toString())


@pytest.fixture
def browser() -> Iterator[Browser]:
    stand_in = Browser()
    for scheme in ("http", "https"):
        QDesktopServices.setUrlHandler(scheme, stand_in, "open")
    yield stand_in
    for scheme in ("http", "https"):
        QDesktopServices.unsetUrlHandler(scheme)


def test_every_action_is_in_a_menu_with_the_standard_shortcuts(desktop: DesktopApp) -> None:
    window = desktop.window
    titles = [a.text() for a in window.menuBar().actions()]
    assert titles == [title for title, _ in MENUS]
    in_menus = {a.objectName() for menu in window.menus.menus.values() for a in menu.actions()}
    assert set(window.toolbar.actions_by_key) <= in_menus
    assert {"quit", "open_in_browser", "copy_reason", "about"} <= in_menus
    assert {"show_queueDock", "show_cloudDock"} <= in_menus

    def keys(key: str) -> set[str]:
        action = window.menus.actions[key]
        return {k.toString() for k in action.shortcuts()}

    assert "Ctrl+Q" in keys("quit") and "F5" in keys("check_now") and "F2" in keys("edit")
    assert "Del" in keys("remove") and "Ctrl+R" in keys("jobs") and "Ctrl+N" in keys("add_worker")
    assert "Return" in keys("edit") and "Ctrl+C" in keys("copy_reason")


KEYS = [  # (key, the action it triggers), pressed in the table with a worker selected
    (QKeySequence("F5"), "check_now"),
    (QKeySequence("Del"), "remove"),
    (QKeySequence("F2"), "edit"),
    (QKeySequence("Return"), "edit"),
    (QKeySequence("Ctrl+C"), "copy_reason"),
    (QKeySequence("Ctrl+L"), "logs"),
    (QKeySequence("Ctrl+R"), "jobs"),
    (QKeySequence("Ctrl+N"), "add_worker"),
    (QKeySequence("Ctrl+B"), "open_in_browser"),
    (QKeySequence("Ctrl+G"), "gpus"),
]


def test_the_keys_trigger_their_actions(desktop: DesktopApp, qtbot: QtBot) -> None:
    """Each key reaches its action (what the action does is the toolbar's, tested there)."""
    actions = desktop.window.menus.actions
    for key in {key for _, key in KEYS}:
        actions[key].triggered.disconnect()  # (here only the key is looked at)
    select(desktop, "gpu1")
    for keys, key in KEYS:
        with qtbot.waitSignal(actions[key].triggered, timeout=2000):
            QTest.keySequence(desktop.window.table, keys)


def test_ctrl_q_quits(desktop: DesktopApp) -> None:
    activate(desktop.window)
    QTest.keySequence(desktop.window, QKeySequence("Ctrl+Q"))
    assert desktop.quit_requested.is_set() and not desktop.window.isVisible()


def test_tab_leaves_the_table_and_reaches_the_toolbar(desktop: DesktopApp) -> None:
    window = desktop.window
    select(desktop, "gpu1")
    assert window.table.hasFocus()
    buttons = [window.toolbar.widgetForAction(a) for a in window.toolbar.actions_by_key.values()]
    QTest.keyClick(window.table, Qt.Key.Key_Tab)
    assert QApplication.focusWidget() is not window.table  # Tab let go of the table
    reached = set()
    for _ in range(60):
        focused = QApplication.focusWidget()
        assert focused is not None, "the focus went nowhere"
        QTest.keyClick(focused, Qt.Key.Key_Tab)
        reached.add(QApplication.focusWidget())
        if any(isinstance(w, QToolButton) and w in buttons for w in reached):
            break
    assert any(w in buttons for w in reached), "Tab never reached the toolbar"
    assert window.table.accessibleName()


def test_open_in_browser_from_the_row_menu_the_details_and_the_tray(
    desktop: DesktopApp, browser: Browser, qtbot: QtBot
) -> None:
    window = desktop.window
    table = window.table
    rows = range(table.model().rowCount())
    row = next(r for r in rows if table.model().index(r, Column.NAME).data() == "runpod")
    where = table.visualRect(table.model().index(row, Column.NAME)).center()
    table.customContextMenuRequested.emit(where)
    qtbot.waitUntil(window.menus.row_menu.isVisible, timeout=2000)
    assert window.selected_name() == "runpod"
    opener = next(a for a in window.menus.row_menu.actions() if a.objectName() == "open_in_browser")
    opener.trigger()
    window.menus.row_menu.hide()
    select(desktop, "lan-box")
    qtbot.mouseClick(window.details.open_button, Qt.MouseButton.LeftButton)
    tray = FleetTray(window, lambda: None, master_url=lambda: desktop.keeper.config.master.url)
    tray.menu.aboutToShow.emit()
    next(a for a in tray.menu.actions() if a.text() == "Open ComfyUI in browser").trigger()
    assert browser.opened == [
        "https://pod-a.invalid",  # a cloud worker's page is https
        "http://127.0.0.20:8188",
        "http://127.0.0.1:8188",
    ]


def test_copy_reason_copies_what_the_row_says(desktop: DesktopApp) -> None:
    select(desktop, "runpod")
    QTest.keySequence(desktop.window.table, QKeySequence(QKeySequence.StandardKey.Copy))
    assert QGuiApplication.clipboard().text() == (
        "runpod: disabled: not watched\nWhat to do: enable it in its settings"
    )
    remedy = desktop.window.details.remedy
    assert remedy.textInteractionFlags() & Qt.TextInteractionFlag.TextSelectableByMouse


def test_the_first_window_fits_the_screen_at_any_scale(desktop: DesktopApp) -> None:
    available = desktop.window.screen().availableGeometry().size()
    assert desktop.window.width() <= available.width()
    assert desktop.window.height() <= available.height()
    assert first_size(QSize(3840, 2160)) == QSize(1440, 860)
    assert first_size(QSize(960, 540)) == QSize(883, 486)  # 1920×1080 at scale 2
