"""A panel in a dock, scrolling up and down only: as narrow as the GPUs beside it until the user
widens it (its buttons wrap and its tables show the columns that fit: nothing widens the window,
and no action is out of sight to the right)."""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt
from PySide6.QtWidgets import QScrollArea, QWidget


class DockScroll(QScrollArea):
    def __init__(self, panel: QWidget) -> None:
        super().__init__()
        self.setWidgetResizable(True)
        self.setWidget(panel)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setMinimumWidth(200)

    def sizeHint(self) -> QSize:
        return QSize(240, 400)
