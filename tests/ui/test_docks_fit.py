"""The Queue, Cloud and GPU docks at the first width, at 1024 px and at their narrowest: every
button inside the dock's view (they wrap onto more lines), no horizontal scrolling, the tables
showing their first columns, and the window still 1024 px wide."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtWidgets import QDockWidget, QPushButton, QTableView
from pytestqt.qtbot import QtBot

from app.ui.application import DesktopApp
from app.ui.dock_scroll import DockScroll

DOCKS = ("queueDock", "cloudDock", "gpuDock")


def dock_of(app: DesktopApp, name: str) -> QDockWidget:
    dock = app.window.findChild(QDockWidget, name)
    assert isinstance(dock, QDockWidget)
    return dock


def fits(dock: QDockWidget) -> bool:
    scroll = dock.widget()
    assert isinstance(scroll, DockScroll)
    panel, view = scroll.widget(), scroll.viewport()
    if panel.width() > view.width():
        return False
    for button in panel.findChildren(QPushButton):
        if button.isVisibleTo(panel):
            left = button.mapTo(view, QPoint(0, 0)).x()
            if left < 0 or left + button.width() > view.width():
                return False
    return True


@pytest.mark.parametrize("dock_width", [None, 200])  # the first width, and the narrowest
def test_every_dock_fits_at_1024_px(desktop: DesktopApp, qtbot: QtBot, dock_width: int) -> None:
    window = desktop.window
    window.resize(1024, 700)
    qtbot.waitUntil(lambda: window.width() == 1024)
    for name in DOCKS:
        dock = dock_of(desktop, name)
        dock.raise_()
        if dock_width:
            window.resizeDocks([dock], [dock_width], Qt.Orientation.Horizontal)
        qtbot.waitUntil(lambda dock=dock: dock.isVisible() and fits(dock))
        scroll = dock.widget()
        assert isinstance(scroll, DockScroll)
        assert scroll.horizontalScrollBarPolicy() is Qt.ScrollBarPolicy.ScrollBarAlwaysOff
        for table in scroll.widget().findChildren(QTableView):
            assert not table.horizontalHeader().isSectionHidden(0)
        assert window.width() == 1024, name


def test_columns_come_back_when_the_dock_is_widened(desktop: DesktopApp, qtbot: QtBot) -> None:
    window = desktop.window
    window.resize(1400, 800)
    dock = dock_of(desktop, "queueDock")
    dock.raise_()
    view = desktop.queue_panel.jobs_view
    header = view.horizontalHeader()
    window.resizeDocks([dock], [210], Qt.Orientation.Horizontal)
    qtbot.waitUntil(lambda: header.isSectionHidden(header.count() - 1))
    window.resizeDocks([dock], [700], Qt.Orientation.Horizontal)
    qtbot.waitUntil(lambda: not any(header.isSectionHidden(c) for c in range(header.count())))
