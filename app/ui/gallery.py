"""A run's images: thumbnails labelled by participant and seed, opened in a viewer on
double-click, with a menu to open, copy, save or show each one."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QPoint, QSize, Qt, QUrl
from PySide6.QtGui import QDesktopServices, QGuiApplication, QIcon, QImage, QPixmap
from PySide6.QtWidgets import (
    QDialog,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from app.core.runs import Output
from app.services.storage import atomic_write_bytes
from app.services.tasks import OwnedTasks
from app.ui.ask import choose_path, tell

THUMB = 160
Fetch = Callable[[Output], "object"]  # an awaitable of the image's bytes


class ImageViewer(QDialog):
    def __init__(self, title: str, image: QImage, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(title)
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        label = QLabel()
        label.setPixmap(QPixmap.fromImage(image))
        scroll = QScrollArea()
        scroll.setWidget(label)
        QVBoxLayout(self).addWidget(scroll)
        self.resize(min(image.width() + 40, 1200), min(image.height() + 40, 900))


class Gallery(QListWidget):
    def __init__(self, fetch: Callable[[Output], object], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("gallery")
        self.setViewMode(QListWidget.ViewMode.IconMode)
        self.setIconSize(QSize(THUMB, THUMB))
        self.setResizeMode(QListWidget.ResizeMode.Adjust)
        # Cells of one size: laid out from the labels, the thumbnails that come later would
        # overlap their neighbours until the next resize.
        self.setGridSize(QSize(THUMB + 24, THUMB + 3 * self.fontMetrics().height() + 12))
        self.setWordWrap(True)
        self.setMovement(QListWidget.Movement.Static)
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.customContextMenuRequested.connect(self._menu)
        self.itemDoubleClicked.connect(lambda item: self.open_image(self.row(item)))
        self._fetch = fetch
        self.outputs: list[Output] = []
        self.images: list[QImage | None] = []
        self.saved: dict[int, Path] = {}
        self._tasks = OwnedTasks(self._failed)

    def _failed(self, what: str, error: BaseException) -> None:
        tell(self, f"{what} failed: {error}")

    def show_outputs(self, outputs: tuple[Output, ...]) -> None:
        self.clear()
        self.outputs, self.images, self.saved = list(outputs), [None] * len(outputs), {}
        for output in outputs:
            who = output.participant or "unknown"
            label = f"{who} · seed {output.seed}" if output.seed is not None else who
            item = QListWidgetItem(label)
            item.setToolTip(output.image.filename)
            self.addItem(item)

    def set_image(self, number: int, data: bytes | None, error: str = "") -> None:
        item = self.item(number)
        if item is None:
            return
        if data is None:
            item.setText(f"{item.text()}\n(not loaded: {error})")
            return
        image = QImage.fromData(data)
        self.images[number] = image
        thumb = image.scaled(
            THUMB,
            THUMB,
            Qt.AspectRatioMode.KeepAspectRatio,
            Qt.TransformationMode.SmoothTransformation,
        )
        item.setIcon(QIcon(QPixmap.fromImage(thumb)))

    def mark_saved(self, paths: list[Path]) -> None:
        self.saved = dict(enumerate(paths))

    def open_image(self, number: int) -> None:
        image = self.images[number] if 0 <= number < len(self.images) else None
        if image is not None:
            ImageViewer(self.item(number).text(), image, self.window()).show()

    def _menu(self, point: QPoint) -> None:
        item = self.itemAt(point)
        if item is None:
            return
        number = self.row(item)
        loaded = self.images[number] is not None
        menu = QMenu(self)
        menu.addAction("Open", lambda: self.open_image(number)).setEnabled(loaded)
        menu.addAction("Copy image", lambda: self._copy(number)).setEnabled(loaded)
        menu.addAction("Save as…", lambda: self._tasks.spawn(self._save(number), "saving"))
        show = menu.addAction("Show in folder", lambda: self._show(number))
        show.setEnabled(number in self.saved)
        if number not in self.saved:
            show.setToolTip("Save it first (Save all… or Save as…)")
        menu.popup(self.viewport().mapToGlobal(point))

    def _copy(self, number: int) -> None:
        image = self.images[number]
        if image is not None:
            QGuiApplication.clipboard().setImage(image)

    async def _save(self, number: int) -> None:
        output = self.outputs[number]
        path = await choose_path(self, "Save image as", save_as=output.image.filename)
        if path is None:
            return
        data = await self._fetch(output)  # type: ignore[misc]
        try:  # the bytes as served (ComfyUI's PNG metadata kept), whole or not at all
            await asyncio.to_thread(atomic_write_bytes, path, data)
        except OSError as exc:
            tell(self, f"Cannot save {path.name} into {path.parent}: {exc.strerror or exc}")
            return
        self.saved[number] = path

    def _show(self, number: int) -> None:
        path = self.saved.get(number)
        if path is not None and not QDesktopServices.openUrl(QUrl.fromLocalFile(str(path.parent))):
            QGuiApplication.clipboard().setText(str(path))
            tell(
                self, f"No file manager opens folders on this desktop; the path is copied:\n{path}"
            )
