"""Starting the app on a config, and reading the fleet table the way a person reads it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from PySide6.QtWidgets import QApplication, QMessageBox, QWidget

from app.core.config import FleetConfig
from app.services.paths import resolve_paths
from app.services.storage import ConfigStore
from app.ui.application import DesktopApp
from app.ui.row_text import Column
from tests.waiting import until


def cell(app: DesktopApp, name: str, column: Column) -> str:
    model = app.window.model
    number = next(i for i, r in enumerate(model.rows()) if r.name == name)
    return str(model.data(model.index(number, column)))


def desktop_with(
    qapp: QApplication, folder: Path, config: FleetConfig, **options: Any
) -> DesktopApp:
    """The app on `config`, saved to `folder` and loaded as a user's file is (`options` go to
    DesktopApp)."""
    paths = resolve_paths(folder / "fleet.json")
    ConfigStore(paths.config_file).save(config)
    return DesktopApp(qapp, paths, ConfigStore(paths.config_file).load(), **options)


def open_question() -> QMessageBox | None:
    """The question box the app is waiting on, if one is open."""
    for widget in QApplication.topLevelWidgets():
        if (
            isinstance(widget, QMessageBox)
            and widget.isVisible()
            and widget.objectName() == "question"
        ):
            return widget
    return None


async def answer(button: QMessageBox.StandardButton, timeout: float = 30) -> str:
    """Wait for the app's question, click `button`; the question's text."""
    await until(lambda: open_question() is not None, timeout)
    box = open_question()
    assert box is not None
    text = box.text()
    box.button(button).click()
    return text


async def told(timeout: float = 30) -> str:
    """Wait for a message the app shows (not a question), close it; its text."""

    def message() -> QMessageBox | None:
        for widget in QApplication.topLevelWidgets():
            if (
                isinstance(widget, QMessageBox)
                and widget.isVisible()
                and widget.objectName() == "message"
            ):
                return widget
        return None

    await until(lambda: message() is not None, timeout)
    box = message()
    assert box is not None
    text = box.text()
    box.accept()
    return text


def activate(window: QWidget) -> None:
    """Shortcuts act in the active window (a closed question leaves none active)."""
    window.activateWindow()
    deadline = time.monotonic() + 5
    while not window.isActiveWindow() and time.monotonic() < deadline:
        QApplication.processEvents()
    assert window.isActiveWindow()


def select(app: DesktopApp, name: str) -> None:
    table = app.window.table
    for row in range(table.model().rowCount()):
        if table.model().index(row, Column.NAME).data() == name:
            table.selectRow(row)
            activate(app.window)
            table.setFocus()
            assert table.hasFocus()
            return
    raise AssertionError(f"no row {name}")
