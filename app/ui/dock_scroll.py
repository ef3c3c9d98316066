"""A panel in a dock, scrolling: as narrow as the GPUs beside it until the user widens it (its
buttons and tables must not widen the window)."""

from __future__ import annotations

from PySide6.QtCore import QSize
from PySide6.QtWidgets import QScrollArea, QWidget


class DockScroll(QScrollArea):
    def __init__(self, panel: QWidget) -> None:
        super().__init__()
        self.setWidgetResizable(True)
        self.setWidget(panel)
        self.setMinimumWidth(200)

    def sizeHint(self) -> QSize:
        return QSize(240, 400)
