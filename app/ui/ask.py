"""Questions to the user that are awaited, never `exec()`-ed.

A dialog's `exec()` (and QMessageBox.question/warning/…) runs a nested Qt event loop; inside a
coroutine on qasync that re-enters other asyncio tasks and breaks them (REFERENCE §6). Here a
dialog is opened with `open()` and its answer comes back through a future resolved by the
dialog's `finished` signal, so the event loop stays the one loop.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from PySide6.QtCore import QMimeData, Qt
from PySide6.QtWidgets import QApplication, QDialog, QFileDialog, QMessageBox, QWidget

from app import APP_NAME
from app.core.workflow_file import EXTENSIONS

Button = QMessageBox.StandardButton


async def answer_of(dialog: QDialog) -> int:
    """Open `dialog` (window-modal) and wait for it to finish; its result code."""
    future: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    def finished(result: int) -> None:
        if not future.done():
            future.set_result(result)

    dialog.finished.connect(finished)
    dialog.setWindowModality(Qt.WindowModality.WindowModal)
    dialog.open()
    try:
        return await future
    finally:
        dialog.finished.disconnect(finished)
        if dialog.isVisible():  # the coroutine was cancelled while the dialog was open
            dialog.reject()


async def ask(
    parent: QWidget | None,
    text: str,
    buttons: Button = Button.Yes | Button.No,
    default: Button = Button.No,
    icon: QMessageBox.Icon = QMessageBox.Icon.Question,
    labels: dict[Button, str] | None = None,
) -> Button:
    """The button the user chose (Escape or closing the box counts as the default); `labels`
    names buttons in the question's own words."""
    box = QMessageBox(icon, APP_NAME, text, buttons, parent)
    box.setObjectName("question")
    box.setDefaultButton(default)
    box.setEscapeButton(default)
    for button, label in (labels or {}).items():
        box.button(button).setText(label)
    try:
        await answer_of(box)
        clicked = box.clickedButton()
        return box.standardButton(clicked) if clicked is not None else default
    finally:
        box.deleteLater()


async def confirm(parent: QWidget | None, text: str, default_yes: bool = False) -> bool:
    default = Button.Yes if default_yes else Button.No
    return await ask(parent, text, default=default) == Button.Yes


def tell(parent: QWidget | None, text: str, warning: bool = True) -> QMessageBox:
    """Show a message without waiting for it (nothing depends on its answer)."""
    icon = QMessageBox.Icon.Warning if warning else QMessageBox.Icon.Information
    box = QMessageBox(icon, APP_NAME, text, Button.Ok, parent)
    box.setObjectName("message")
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    box.open()
    return box


async def choose_path(
    parent: QWidget | None,
    caption: str,
    mode: QFileDialog.FileMode = QFileDialog.FileMode.ExistingFile,
    name_filter: str = "",
    save_as: str = "",
) -> Path | None:
    """A file or folder the user picks (None: cancelled); `save_as` makes it a save dialog."""
    dialog = QFileDialog(parent, caption)
    dialog.setFileMode(QFileDialog.FileMode.AnyFile if save_as else mode)
    if save_as:
        dialog.setAcceptMode(QFileDialog.AcceptMode.AcceptSave)
        dialog.selectFile(save_as)
    if mode is QFileDialog.FileMode.Directory:
        dialog.setOption(QFileDialog.Option.ShowDirsOnly, True)
    if name_filter:
        dialog.setNameFilter(name_filter)
    try:
        if await answer_of(dialog) != QDialog.DialogCode.Accepted or not dialog.selectedFiles():
            return None
        return Path(dialog.selectedFiles()[0])
    finally:
        dialog.deleteLater()


WORKFLOW_FILTER = "Workflows and ComfyUI images (" + " ".join(f"*{e}" for e in EXTENSIONS) + ")"


def dropped_workflows(mime: QMimeData) -> list[Path]:
    """The workflow files (.json, or images ComfyUI made) among what is dragged."""
    paths = [Path(u.toLocalFile()) for u in mime.urls() if u.isLocalFile()]
    return [p for p in paths if p.suffix.lower() in EXTENSIONS]


class DialogAsker:
    """Questions and messages for the services' faces, over the window the user is in."""

    def __init__(self, fallback: QWidget | None = None) -> None:
        self.fallback = fallback

    def _parent(self) -> QWidget | None:
        return QApplication.activeWindow() or self.fallback

    async def confirm(self, text: str, default_yes: bool = False) -> bool:
        return await confirm(self._parent(), text, default_yes)

    def tell(self, text: str) -> None:
        tell(self._parent(), text)
