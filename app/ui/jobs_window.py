"""Distributed jobs in the window: open a workflow, preflight, run, follow, interrupt, gallery."""

from __future__ import annotations

import asyncio
import html
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from PySide6.QtCore import QSize, Qt, QUrl
from PySide6.QtGui import QCloseEvent, QDesktopServices, QIcon, QImage, QPixmap
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QProgressBar,
    QPushButton,
    QSplitter,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app import APP_NAME
from app.core.config import FleetConfig, Notice
from app.core.errors import ComfyFleetError
from app.core.runs import Participant, Phase, Progress, RunResult
from app.core.workflow import PreflightResult, Workflow, load_workflow
from app.services.job_service import CanaryReport, JobService
from app.services.jobs import Run, RunRejected, fetch_image, save_outputs
from app.ui.ask import choose_path, confirm
from app.ui.preflight_dialog import PreflightDialog

log = logging.getLogger(__name__)

THUMB = 160
PHASE_MARK = {
    Phase.WAITING: "…",
    Phase.RUNNING: "▶",
    Phase.DONE: "✔",
    Phase.FAILED: "✘",
    Phase.INTERRUPTED: "■",
    Phase.SKIPPED: "⤼",
}


@dataclass
class RunRecord:
    """One run of this session, for the history list."""

    title: str
    started: str
    result: RunResult | None = None
    error: str = ""


class JobsWindow(QMainWindow):
    def __init__(
        self,
        session: Callable[[], aiohttp.ClientSession],
        config: FleetConfig,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self._session = session
        self.config = config
        self.workflow: Workflow | None = None
        self.workflow_name = ""
        self.run: Run | None = None
        self.history: list[RunRecord] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._items: dict[str, QTreeWidgetItem] = {}
        self.setWindowTitle(f"Jobs — {APP_NAME}")
        self.setObjectName("JobsWindow")
        self.resize(1000, 680)

        self.file_label = QLabel("No workflow open. Open an API-format workflow (.json).")
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.workers = QListWidget()
        self.workers.setMaximumWidth(220)
        self.progress = QTreeWidget()
        self.progress.setHeaderLabels(["Participant", "State", "Progress", "Images", "Time"])
        self.progress.setRootIsDecorated(False)
        for column, width in enumerate((150, 300, 110, 60)):
            self.progress.setColumnWidth(column, width)
        self.gallery = QListWidget()
        self.gallery.setViewMode(QListWidget.ViewMode.IconMode)
        self.gallery.setIconSize(QSize(THUMB, THUMB))
        self.gallery.setResizeMode(QListWidget.ResizeMode.Adjust)
        self.gallery.setSpacing(8)
        self.gallery.setObjectName("gallery")
        self.runs = QListWidget()
        self.runs.setMaximumWidth(220)
        self.runs.currentRowChanged.connect(self._show_record)
        self.buttons = {
            name: QPushButton(name)
            for name in (
                "Open workflow…",
                "Run",
                "Interrupt",
                "Test fleet",
                "Save all…",
                "Open folder",
            )
        }
        for name, slot in (
            ("Open workflow…", self.choose_workflow),
            ("Run", lambda: self._spawn(self.start_run())),
            ("Interrupt", lambda: self._spawn(self.interrupt())),
            ("Test fleet", lambda: self._spawn(self.test_fleet())),
            ("Save all…", lambda: self._spawn(self.save_all())),
            ("Open folder", self._open_folder),
        ):
            self.buttons[name].clicked.connect(slot)
        self.saved_to: Path | None = None
        self._closing = False
        self.notify: Callable[[Notice, str, str], None] = lambda notice, title, text: None
        self.ask_drop_failing: Callable[[list[PreflightResult]], Awaitable[bool]] = lambda checks: (
            PreflightDialog(checks, self).ask()
        )
        self._layout()
        self.set_config(config)
        self._set_busy(False)

    def _layout(self) -> None:
        top = QHBoxLayout()
        for name in ("Open workflow…", "Run", "Interrupt", "Test fleet"):
            top.addWidget(self.buttons[name])
        top.addWidget(self.file_label, 1)
        left = QVBoxLayout()
        left.addWidget(QLabel("Workers in the run"))
        left.addWidget(self.workers, 1)
        left.addWidget(QLabel("Runs this session"))
        left.addWidget(self.runs, 1)
        gallery_bar = QHBoxLayout()
        gallery_bar.addWidget(QLabel("Results"))
        gallery_bar.addStretch(1)
        gallery_bar.addWidget(self.buttons["Save all…"])
        gallery_bar.addWidget(self.buttons["Open folder"])
        right = QVBoxLayout()
        right.addWidget(self.message)
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self.progress)
        pane = QWidget()
        pane_layout = QVBoxLayout(pane)
        pane_layout.setContentsMargins(0, 0, 0, 0)
        pane_layout.addLayout(gallery_bar)
        pane_layout.addWidget(self.gallery, 1)
        splitter.addWidget(pane)
        splitter.setSizes([220, 400])
        right.addWidget(splitter, 1)
        body = QHBoxLayout()
        body.addLayout(left)
        body.addLayout(right, 1)
        central = QWidget()
        outer = QVBoxLayout(central)
        outer.addLayout(top)
        outer.addLayout(body, 1)
        self.setCentralWidget(central)

    # inputs

    def set_config(self, config: FleetConfig) -> None:
        chosen = {
            self.workers.item(i).text(): self.workers.item(i).checkState()
            for i in range(self.workers.count())
        }
        self.config = config
        self.workers.clear()
        for worker in config.workers:
            if not worker.enabled:
                continue
            item = QListWidgetItem(worker.name)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(chosen.get(worker.name, Qt.CheckState.Checked))
            self.workers.addItem(item)

    def chosen_workers(self) -> list[str]:
        return [
            self.workers.item(i).text()
            for i in range(self.workers.count())
            if self.workers.item(i).checkState() == Qt.CheckState.Checked
        ]

    def choose_workflow(self) -> None:
        self._spawn(self._choose_workflow())

    async def _choose_workflow(self) -> None:
        path = await choose_path(
            self, "Open workflow (API format)", name_filter="Workflow (*.json)"
        )
        if path is not None:
            self.open_workflow(path)

    def open_workflow(self, path: Path) -> bool:
        try:
            self.workflow = load_workflow(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            self._error(f"Cannot read {path}: {exc}")
            return False
        except ComfyFleetError as exc:
            self._error(f"{path.name}: {exc}")
            return False
        self.workflow_name = path.name
        self.file_label.setText(f"{path.name} — {len(self.workflow)} nodes")
        self._set_busy(False)
        return True

    # actions

    def _service(self) -> JobService:
        return JobService(self._session(), self.config)

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def start_run(self) -> None:
        if self.workflow is None or self.run is not None:
            return
        service = self._service()
        master, workers = service.participants(self.chosen_workers())
        self._set_busy(True)
        self.message.setText("Checking the master's ComfyUI-Distributed and every participant…")
        record = RunRecord(self.workflow_name, time.strftime("%H:%M:%S"))
        try:
            missing = await service.sync_or_explain()
            if missing:
                self.message.setText(missing)
            everyone = [master, *([] if missing else workers)]
            participants = await self._preflight(service, self.workflow, everyone)
            if participants is None:
                record.error = "cancelled at the preflight"
                self.message.setText("Run cancelled: nothing was sent.")
                return
            self.run = service.start(participants, self.show_progress, use_extension=not missing)
            self._reset_progress(participants)
            self.message.setText(
                f"Running {self.workflow_name} on {len(participants)} participant(s)…"
            )
            record.result = await self.run.execute(self.workflow)
            self._finished(record.result)
        except RunRejected as exc:
            record.error = str(exc)
            self._error(f"ComfyUI rejected the workflow:\n{exc}")
        except (ComfyFleetError, aiohttp.ClientError, OSError) as exc:
            record.error = str(exc)
            self._error(f"The run failed: {exc}")
        finally:
            self.run = None
            self._set_busy(False)
            self._add_record(record)

    async def _preflight(
        self, service: JobService, workflow: Workflow, participants: list[Participant]
    ) -> list[Participant] | None:
        checks = await service.preflight(workflow, participants)
        if all(c.ok for c in checks):
            return participants
        if not await self.ask_drop_failing(checks):
            return None
        failing = {c.participant for c in checks if not c.ok}
        return [p for p in participants if p.name not in failing]

    async def interrupt(self) -> None:
        if self.run is not None:
            self.message.setText("Interrupting every participant's part of the run…")
            stopped = await self.run.interrupt()
            self.message.setText("Interrupted.\n" + "\n".join(s.describe() for s in stopped))

    async def stop_run_if_asked(self) -> bool:
        """No run, or the user agreed to interrupt it (and it was, on every participant)."""
        if self.run is None:
            return True
        self.show()
        self.raise_()
        question = (
            f"{self.workflow_name} is running on {len(self.run.workers) + 1} participant(s).\n\n"
            "Interrupt it on every participant?"
        )
        if not await confirm(self, question):
            return False
        await self.interrupt()
        return True

    def closeEvent(self, event: QCloseEvent) -> None:
        """Closing during a run asks first, then interrupts the run everywhere."""
        if self.run is None or self._closing:
            event.accept()
            return
        event.ignore()
        self._spawn(self._close_after_asking())

    async def _close_after_asking(self) -> None:
        if await self.stop_run_if_asked():
            self._closing = True
            self.close()
            self._closing = False

    async def test_fleet(self) -> None:
        self._set_busy(True)
        service = self._service()
        master, workers = service.participants()
        self._reset_progress([master, *workers])
        self.message.setText("Test fleet: a tiny model-free image on every participant…")
        try:
            reports = await service.test_fleet(self.show_progress)
        except (ComfyFleetError, aiohttp.ClientError, OSError) as exc:
            self._error(f"The test could not run: {exc}")
        else:
            self._show_canary(reports)
        finally:
            self._set_busy(False)

    # results

    def show_progress(self, progress: Progress) -> None:
        item = self._items.get(progress.name)
        if item is None:
            return
        item.setText(1, f"{PHASE_MARK[progress.phase]} {progress.describe()}")
        item.setToolTip(1, progress.error or progress.describe())
        bar = self.progress.itemWidget(item, 2)
        if isinstance(bar, QProgressBar):
            bar.setMaximum(progress.maximum or 1)
            bar.setValue(progress.value if progress.maximum else int(progress.phase is Phase.DONE))
        item.setText(3, str(len(progress.images)))
        item.setText(4, "" if progress.seconds is None else f"{progress.seconds:.2f} s")

    def _reset_progress(self, participants: list[Participant]) -> None:
        self.progress.clear()
        self._items.clear()
        for participant in participants:
            item = QTreeWidgetItem([participant.name, "… waiting", "", "0", ""])
            self.progress.addTopLevelItem(item)
            bar = QProgressBar()
            bar.setMaximum(1)
            bar.setValue(0)
            self.progress.setItemWidget(item, 2, bar)
            self._items[participant.name] = item

    def _finished(self, result: RunResult) -> None:
        delivered = list(dict.fromkeys(o.participant or "?" for o in result.outputs))
        lines = [f"Done: {len(result.outputs)} image(s) from {', '.join(delivered) or 'nobody'}."]
        lines += [f"⚠ {w}" for w in result.warnings]
        self.message.setText("\n".join(lines))
        self.notify(Notice.RUN_FINISHED, f"Run finished: {self.workflow_name}", lines[0])

    def _show_canary(self, reports: list[CanaryReport]) -> None:
        for report in reports:
            item = self._items.get(report.name)
            if item is None:
                continue
            took = "" if report.seconds is None else f" in {report.seconds:.2f} s"
            item.setText(1, f"✔ delivered{took}" if report.delivered else f"✘ {report.error}")
            item.setToolTip(1, report.error or "delivered")
        good = sum(r.delivered for r in reports)
        lines = [f"Test fleet: {good} of {len(reports)} participants delivered."]
        lines += [f"✘ {r.name}: {r.error}" for r in reports if not r.delivered]
        self.message.setText("\n".join(lines))

    def _add_record(self, record: RunRecord) -> None:
        self.history.append(record)
        outcome = (
            record.error.splitlines()[0][:40]
            if record.error
            else f"{len(record.result.outputs) if record.result else 0} images"
        )
        self.runs.addItem(f"{record.started}  {record.title}\n{outcome}")
        self.runs.setCurrentRow(len(self.history) - 1)

    def _show_record(self, row: int) -> None:
        result = self.history[row].result if 0 <= row < len(self.history) else None
        self.buttons["Save all…"].setEnabled(result is not None)
        if result is not None:
            self._spawn(self.show_gallery(result))

    async def show_gallery(self, result: RunResult) -> None:
        self.gallery.clear()
        url = self.config.master.url
        for output in result.outputs:
            label = (
                f"{output.participant or 'unknown'} · seed {output.seed}"
                if output.seed is not None
                else output.participant
            )
            item = QListWidgetItem(label)
            item.setToolTip(output.image.filename)
            self.gallery.addItem(item)
            try:
                image = QImage.fromData(await fetch_image(self._session(), url, output.image))
            except (aiohttp.ClientError, OSError) as exc:
                item.setText(f"{label}\n(not loaded: {exc})")
                continue
            thumb = image.scaled(
                THUMB,
                THUMB,
                Qt.AspectRatioMode.KeepAspectRatio,
                Qt.TransformationMode.SmoothTransformation,
            )
            item.setIcon(QIcon(QPixmap.fromImage(thumb)))

    def shown_result(self) -> RunResult | None:
        row = self.runs.currentRow()
        return self.history[row].result if 0 <= row < len(self.history) else None

    async def save_all(self, folder: Path | None = None) -> None:
        result = self.shown_result()
        if result is None:
            return
        if folder is None:
            folder = await choose_path(self, "Save all images into", QFileDialog.FileMode.Directory)
            if folder is None:
                return
        url = self.config.master.url
        saved = await save_outputs(self._session(), url, result, folder)
        self.saved_to = folder
        self._set_busy(False)
        self.message.setText(f"Saved {len(saved)} image(s) into {folder}.")

    def _open_folder(self) -> None:
        if self.saved_to is not None:
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.saved_to)))

    def _set_busy(self, busy: bool) -> None:
        self.buttons["Run"].setEnabled(not busy and self.workflow is not None)
        self.buttons["Interrupt"].setEnabled(busy)
        self.buttons["Test fleet"].setEnabled(not busy)
        self.buttons["Open workflow…"].setEnabled(not busy)
        self.buttons["Open folder"].setEnabled(self.saved_to is not None)
        self.buttons["Save all…"].setEnabled(self.shown_result() is not None)

    def _error(self, text: str) -> None:
        self.message.setText(
            f"<span style='color:#b3261e'>{html.escape(text)}</span>".replace("\n", "<br>")
        )
