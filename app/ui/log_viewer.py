"""An instance's log, live: follow, search, copy, open the file."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QUrl
from PySide6.QtGui import QDesktopServices, QFont, QGuiApplication, QTextCursor
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

MAX_BLOCKS = 20000


class LogViewer(QDialog):
    def __init__(
        self, name: str, lines: list[str], log_file: Path, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)  # owned by Qt through its parent, not by Python's GC
        self.name = name
        self.log_file = log_file
        self.setWindowTitle(f"Log — {name}")
        self.resize(900, 520)
        self.text = QPlainTextEdit()
        self.text.setReadOnly(True)
        self.text.setMaximumBlockCount(MAX_BLOCKS)
        self.text.setFont(QFont("monospace"))
        self.follow = QCheckBox("Follow")
        self.follow.setChecked(True)
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search…")
        self.search.returnPressed.connect(self.find_next)
        self.found = QLabel()
        copy = QPushButton("Copy all")
        copy.clicked.connect(lambda: QGuiApplication.clipboard().setText(self.text.toPlainText()))
        open_file = QPushButton("Open file")
        open_file.clicked.connect(
            lambda: QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.log_file)))
        )
        bar = QHBoxLayout()
        for widget in (self.follow, self.search, self.found, copy, open_file):
            bar.addWidget(widget)
        layout = QVBoxLayout(self)
        layout.addLayout(bar)
        layout.addWidget(self.text, 1)
        layout.addWidget(QLabel(str(log_file)))
        self.text.setPlainText("\n".join(lines))
        self._scroll_to_end()

    def add_line(self, name: str, line: str) -> None:
        if name != self.name:
            return
        self.text.appendPlainText(line)
        if self.follow.isChecked():
            self._scroll_to_end()

    def _scroll_to_end(self) -> None:
        self.text.moveCursor(QTextCursor.MoveOperation.End)
        self.text.ensureCursorVisible()

    def find_next(self) -> bool:
        needle = self.search.text()
        if not needle:
            return False
        self.follow.setChecked(False)
        found = self.text.find(needle)
        if not found:  # wrap around once
            self.text.moveCursor(QTextCursor.MoveOperation.Start)
            found = self.text.find(needle)
        self.found.setText("" if found else "not found")
        return bool(found)
