"""Every instance's log, live: a local one's this launch and its earlier ones (the crashed run's
is the one a user wants), a remote or cloud one's from its own ComfyUI."""

from __future__ import annotations

import asyncio
import functools
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from PySide6.QtCore import QObject, QTimer, QUrl, Signal
from PySide6.QtGui import QDesktopServices, QFont, QGuiApplication, QTextCursor
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.core.config import WorkerKind
from app.services.remote_logs import RemoteLog
from app.services.supervisor import KEEP_LAUNCH_LOGS, Supervisor
from app.services.tasks import OwnedTasks
from app.ui.ask import tell
from app.ui.config_keeper import ConfigKeeper

MAX_BLOCKS = 20000
KEEP_REMOTE = 2000


@dataclass(frozen=True)
class Launch:
    label: str
    path: Path | None  # None: this launch, live


@dataclass
class _Followed:
    task: object
    lines: deque[str] = field(default_factory=lambda: deque(maxlen=KEEP_REMOTE))
    users: int = 0
    state: str = "connecting…"


class LogSources(QObject):
    """Where each instance's log comes from, and its new lines as signals."""

    lineAdded = Signal(str, str)  # name, line
    stateChanged = Signal(str, str)  # name, how its remote log is doing

    def __init__(
        self,
        supervisor: Supervisor,
        keeper: ConfigKeeper,
        session: Callable[[], aiohttp.ClientSession],
    ) -> None:
        super().__init__()
        self._supervisor = supervisor
        self._keeper = keeper
        self._session = session
        self._followed: dict[str, _Followed] = {}
        self._tasks = OwnedTasks()

    def is_local(self, name: str) -> bool:
        if name == "master":
            return self._keeper.config.master.launched_by_app
        worker = self._keeper.config.worker(name)
        return worker is not None and worker.kind is WorkerKind.LOCAL

    def url(self, name: str) -> str:
        if name == "master":
            return self._keeper.config.master.url
        worker = self._keeper.config.worker(name)
        return worker.url if worker else ""

    def launches(self, name: str) -> list[Launch]:
        if not self.is_local(name):
            return [Launch(f"Live from {self.url(name)} (its own ComfyUI)", None)]
        current = self._supervisor.log_path(name)
        found = [Launch("This launch (live)", None)]
        for number in range(1, KEEP_LAUNCH_LOGS + 1):
            older = current.with_name(f"{current.name}.{number}")
            if older.is_file():
                ended = time.strftime("%Y-%m-%d %H:%M", time.localtime(older.stat().st_mtime))
                which = "the launch before" if number == 1 else f"{number} launches before"
                found.append(Launch(f"{which.capitalize()} (ended {ended})", older))
        return found

    def log_file(self, name: str) -> Path | None:
        return self._supervisor.log_path(name) if self.is_local(name) else None

    def recent(self, name: str, count: int = 200) -> list[str]:
        if self.is_local(name):
            return self._supervisor.lines(name)[-count:]
        followed = self._followed.get(name)
        return list(followed.lines)[-count:] if followed else []

    def state(self, name: str) -> str:
        followed = self._followed.get(name)
        return followed.state if followed else ""

    def add_local_line(self, name: str, line: str) -> None:
        self.lineAdded.emit(name, line)

    def follow(self, name: str) -> None:
        """Keep reading a remote instance's log while anyone shows it."""
        if self.is_local(name):
            return
        followed = self._followed.get(name)
        if followed is None:
            followed = _Followed(task=None)
            self._followed[name] = followed
            # (asked for as the window is built, before the event loop runs: start it then)
            QTimer.singleShot(0, functools.partial(self._read, name, followed))
        followed.users += 1

    def _read(self, name: str, followed: _Followed) -> None:
        if self._followed.get(name) is not followed:
            return  # not wanted any more
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return  # Qt without asyncio's loop (a bare window in a test): nothing can be read
        remote = RemoteLog(
            self._session(),
            self.url(name),
            functools.partial(self._remote_lines, name),
            functools.partial(self._remote_state, name),
        )
        followed.task = self._tasks.spawn(remote.follow(), f"following {name}'s log")

    def unfollow(self, name: str) -> None:
        followed = self._followed.get(name)
        if followed is None:
            return
        followed.users -= 1
        if followed.users <= 0:
            self._followed.pop(name)
            task = followed.task
            if hasattr(task, "cancel"):
                task.cancel()

    def _remote_lines(self, name: str, lines: list[str]) -> None:
        followed = self._followed.get(name)
        if followed is None:
            return
        for line in lines:
            followed.lines.append(line)
            self.lineAdded.emit(name, line)

    def _remote_state(self, name: str, state: str) -> None:
        followed = self._followed.get(name)
        if followed is not None:
            followed.state = state
            self.stateChanged.emit(name, state)

    async def close(self) -> None:
        self._followed.clear()
        await self._tasks.cancel_all()


class LogViewer(QDialog):
    def __init__(self, name: str, sources: LogSources, parent: QWidget | None = None) -> None:
        super().__init__(parent)  # owned by Qt through its parent, not by Python's GC
        self.name = name
        self.sources = sources
        self.setWindowTitle(f"Log — {name}")
        self.resize(960, 560)
        self.text = QPlainTextEdit()
        self.text.setReadOnly(True)
        self.text.setMaximumBlockCount(MAX_BLOCKS)
        self.text.setFont(QFont("monospace"))
        self.launch = QComboBox()
        self.launches = sources.launches(name)
        for launch in self.launches:
            self.launch.addItem(launch.label)
        self.launch.currentIndexChanged.connect(self._show_launch)
        self.follow = QCheckBox("Follow")
        self.follow.setChecked(True)
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search…")
        self.search.returnPressed.connect(self.find_next)
        self.found = QLabel()
        copy = QPushButton("Copy all")
        copy.clicked.connect(lambda: QGuiApplication.clipboard().setText(self.text.toPlainText()))
        self.open_file = QPushButton("Open file")
        self.open_file.clicked.connect(self.open_in_desktop)
        self.where = QLabel()
        self.where.setWordWrap(True)
        bar = QHBoxLayout()
        for widget in (self.launch, self.follow, self.search, self.found, copy, self.open_file):
            bar.addWidget(widget)
        layout = QVBoxLayout(self)
        layout.addLayout(bar)
        layout.addWidget(self.text, 1)
        layout.addWidget(self.where)
        sources.lineAdded.connect(self.add_line)
        sources.stateChanged.connect(self._state)
        sources.follow(name)
        self.finished.connect(lambda _: sources.unfollow(name))
        self._show_launch(0)

    def _path(self) -> Path | None:
        launch = self.launches[self.launch.currentIndex()]
        return launch.path or self.sources.log_file(self.name)

    def _show_launch(self, number: int) -> None:
        launch = self.launches[number]
        if launch.path is None:
            lines = self.sources.recent(self.name, MAX_BLOCKS)
        else:
            lines = launch.path.read_text("utf-8", "replace").splitlines()
        self.text.setPlainText("\n".join(lines))
        path = self._path()
        self.open_file.setEnabled(path is not None)
        self.open_file.setToolTip("" if path else "a remote instance's log is on its own machine")
        state = self.sources.state(self.name)
        self.where.setText(str(path) if path else f"{self.sources.url(self.name)} — {state}")
        self._scroll_to_end()

    def _state(self, name: str, state: str) -> None:
        if name == self.name and self.launches[self.launch.currentIndex()].path is None:
            self.where.setText(f"{self.sources.url(name)} — {state}")

    def add_line(self, name: str, line: str) -> None:
        if name != self.name or self.launches[self.launch.currentIndex()].path is not None:
            return
        self.text.appendPlainText(line)
        if self.follow.isChecked():
            self._scroll_to_end()

    def open_in_desktop(self) -> bool:
        """The file in the desktop's program for it, or why it cannot be (path copied)."""
        path = self._path()
        if path is None:
            return False
        if QDesktopServices.openUrl(QUrl.fromLocalFile(str(path))):
            return True
        QGuiApplication.clipboard().setText(str(path))
        tell(
            self,
            "No program on this desktop is set to open log files, so it could not be "
            f"opened. Its path is copied:\n{path}",
        )
        return False

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
