"""Distributed jobs in the window: open a workflow, preflight, run, follow, interrupt, gallery.
It presents app.services.run_once; what a run is lives there."""

from __future__ import annotations

import html
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from PySide6.QtCore import Qt, QTimer, QUrl, Signal
from PySide6.QtGui import QCloseEvent, QDesktopServices, QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from app import APP_NAME
from app.core.config import FleetConfig, Notice
from app.core.errors import ComfyFleetError
from app.core.health import WorkerHealth, WorkerState
from app.core.preflight_advice import preflight_advice, where_it_runs
from app.core.runs import Output, Progress, RunResult
from app.core.workflow import MASTER_ONLY, PreflightResult, Workflow, is_distributed
from app.core.workflow_file import WorkflowFile
from app.services import run_once
from app.services.job_service import CanaryReport, JobService
from app.services.jobs import Run, RunRejected, fetch_image, save_outputs
from app.services.tasks import OwnedTasks
from app.services.workflow_source import prompt_of, read_workflow_file
from app.ui.ask import WORKFLOW_FILTER, choose_path, confirm, dropped_workflows
from app.ui.gallery import Gallery
from app.ui.preflight_dialog import PreflightDialog
from app.ui.run_progress import RunProgress

log = logging.getLogger(__name__)

UP = (WorkerState.ONLINE, WorkerState.BUSY)
NO_WORKFLOW = (
    "No workflow open. Open or drop a workflow (.json, UI or API format) or an image ComfyUI made."
)
Health = Callable[[str], WorkerHealth | None]
AskDrop = Callable[[list[PreflightResult]], Awaitable[bool]]


@dataclass
class RunRecord:
    """One run of this session, for the history list."""

    title: str
    started: str
    result: RunResult | None = None
    error: str = ""


class JobsWindow(QMainWindow):
    noticeRaised = Signal(object, str, str)  # Notice, title, text

    def __init__(
        self,
        session: Callable[[], aiohttp.ClientSession],
        config: FleetConfig,
        health: Health = lambda name: None,
        ask_drop_failing: AskDrop | None = None,
        parent: QWidget | None = None,
        instance_state: Callable[[str], str | None] = lambda name: None,
    ) -> None:
        """`instance_state`: the state of the process ComfyFleet runs for a local instance."""
        super().__init__(parent)
        self._session = session
        self._health = health
        self._instance_state = instance_state
        self.config = config
        self.ask_drop_failing: AskDrop = ask_drop_failing or (
            lambda checks: PreflightDialog(checks, self, self.model_sources, self.advice).ask()
        )
        self.workflow: Workflow | None = None
        self.workflow_name = ""
        self.model_sources: dict[str, str] = {}  # model file → URL, from a UI workflow
        self.run: Run | None = None
        self.history: list[RunRecord] = []
        self._tasks = OwnedTasks(lambda what, exc: self._error(f"{what} failed: {exc}"))
        self.saved_to: Path | None = None
        self._closing = False
        self.setWindowTitle(f"Jobs — {APP_NAME}")
        self.setObjectName("JobsWindow")
        self.setAcceptDrops(True)
        self.resize(1040, 700)
        self._build()
        self.set_config(config)
        self._set_busy(False)
        self._clock = QTimer(self)  # the Time column of who is still at it, and who is online
        self._clock.timeout.connect(self._tick)
        self._clock.start(1000)

    def advice(self, check: PreflightResult) -> str:
        """What to do about a failing participant, by where it runs and how it is doing."""
        where = where_it_runs(self.config, check.participant)
        folder = self.config.master.comfyui_dir or "the install"
        return preflight_advice(check, where, self._instance_state(check.participant), folder)

    def _build(self) -> None:
        self.file_label = QLabel(NO_WORKFLOW)
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.workers = QListWidget()
        self.workers.setMaximumWidth(240)
        self.progress = RunProgress()
        self.gallery = Gallery(
            lambda output: fetch_image(self._session(), self.config.master.url, output.image)
        )
        self.runs = QListWidget()
        self.runs.setMaximumWidth(240)
        self.runs.currentRowChanged.connect(self._show_record)
        names = ("Open workflow…", "Run", "Interrupt", "Test fleet", "Save all…", "Open folder")
        self.buttons = {name: QPushButton(name) for name in names}
        for name, slot in (
            ("Open workflow…", self.choose_workflow),
            ("Run", lambda: self._tasks.spawn(self.start_run(), "the run")),
            ("Interrupt", lambda: self._tasks.spawn(self.interrupt(), "interrupting")),
            ("Test fleet", lambda: self._tasks.spawn(self.test_fleet(), "the fleet test")),
            ("Save all…", lambda: self._tasks.spawn(self.save_all(), "saving")),
            ("Open folder", self._open_folder),
        ):
            self.buttons[name].clicked.connect(slot)
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
        gallery_bar.addWidget(QLabel("Results (double-click to open; right-click for more)"))
        gallery_bar.addStretch(1)
        gallery_bar.addWidget(self.buttons["Save all…"])
        gallery_bar.addWidget(self.buttons["Open folder"])
        pane = QWidget()
        pane_layout = QVBoxLayout(pane)
        pane_layout.setContentsMargins(0, 0, 0, 0)
        pane_layout.addLayout(gallery_bar)
        pane_layout.addWidget(self.gallery, 1)
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self.progress)
        splitter.addWidget(pane)
        splitter.setSizes([220, 400])
        right = QVBoxLayout()
        right.addWidget(self.message)
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
        """The enabled workers, ticked unless offline (a choice made here is kept)."""
        chosen = {
            self.workers.item(i).data(Qt.ItemDataRole.UserRole): self.workers.item(i).checkState()
            for i in range(self.workers.count())
        }
        self.config = config
        self.workers.clear()
        for worker in config.workers:
            if not worker.enabled:
                continue
            item = QListWidgetItem()
            item.setData(Qt.ItemDataRole.UserRole, worker.name)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            up = self._is_up(worker.name)
            default = Qt.CheckState.Checked if up is not False else Qt.CheckState.Unchecked
            item.setCheckState(chosen.get(worker.name, default))
            self.workers.addItem(item)
        self._show_worker_states()

    def _is_up(self, name: str) -> bool | None:
        health = self._health(name)
        if health is None or health.state is WorkerState.STARTING:
            return None
        return health.state in UP

    def _show_worker_states(self) -> None:
        for number in range(self.workers.count()):
            item = self.workers.item(number)
            name = item.data(Qt.ItemDataRole.UserRole)
            up = self._is_up(name)
            mark, said = {True: ("●", "online"), False: ("○", "offline"), None: ("◌", "checking")}[
                up
            ]
            item.setText(f"{mark} {name} — {said}")
            item.setToolTip(
                "not ticked while offline: the master would skip it" if up is False else ""
            )

    def chosen_workers(self) -> list[str]:
        return [
            self.workers.item(i).data(Qt.ItemDataRole.UserRole)
            for i in range(self.workers.count())
            if self.workers.item(i).checkState() == Qt.CheckState.Checked
        ]

    def choose_workflow(self) -> None:
        self._tasks.spawn(self._choose_workflow(), "opening a workflow")

    async def _choose_workflow(self) -> None:
        path = await choose_path(self, "Open a workflow", name_filter=WORKFLOW_FILTER)
        if path is not None:
            self.open_workflow(path)

    def open_workflow(self, path: Path) -> bool:
        """The workflow to run; one that cannot be used leaves none armed. A UI-format one is
        converted with the master's nodes first (armed when that is done)."""
        try:
            file = read_workflow_file(path)
        except ComfyFleetError as exc:
            self._disarm(path, exc)
            return False
        if file.prompt is None:
            self.workflow, self.workflow_name = None, ""
            self.file_label.setText(f"{path.name} — converting it with the master's nodes…")
            self._set_busy(False)
            self._tasks.spawn(self._convert(path, file), f"converting {path.name}")
            return True
        self._arm(path.name, file.prompt, file)
        return True

    async def _convert(self, path: Path, file: WorkflowFile) -> None:
        try:
            prompt = await prompt_of(file, self._session(), self.config.master.url)
        except ComfyFleetError as exc:
            self._disarm(path, exc)
            return
        self._arm(path.name, prompt, file)

    def _arm(self, name: str, workflow: Workflow, file: WorkflowFile) -> None:
        self.workflow, self.workflow_name = workflow, name
        self.model_sources = file.model_sources
        kind = f"{file.kind}, converted" if file.needs_conversion else file.kind
        self.file_label.setText(f"{name} — {kind}, {len(workflow)} nodes")
        self.message.setText("" if is_distributed(workflow) else f"ⓘ {MASTER_ONLY}")
        self._set_busy(False)

    def _disarm(self, path: Path, exc: Exception) -> None:
        self.workflow, self.workflow_name = None, ""
        self.file_label.setText(NO_WORKFLOW)
        self._error(f"{path.name}: {exc}")
        self._set_busy(False)

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if dropped_workflows(event.mimeData()):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        files = dropped_workflows(event.mimeData())
        if files:
            self.open_workflow(files[0])
            event.acceptProposedAction()

    # actions

    def _service(self) -> JobService:
        return JobService(self._session(), self.config)

    async def start_run(self) -> None:
        if self.workflow is None or self.run is not None:
            return
        service = self._service()
        self._set_busy(True)
        self.gallery.show_outputs(())
        self.message.setText("Checking the master's ComfyUI-Distributed and every participant…")
        record = RunRecord(self.workflow_name, time.strftime("%H:%M:%S"))
        try:
            prepared = await run_once.prepare(
                service, self.workflow, self.chosen_workers(), self.ask_drop_failing
            )
            self.run = run_once.start(service, prepared, self.show_progress)
            self.progress.begin(prepared.participants)
            notes = "".join(f"ⓘ {html.escape(n)}<br>" for n in prepared.notes)
            count = len(prepared.participants)
            self.message.setText(f"{notes}Running {self.workflow_name} on {count} participant(s)…")
            record.result = await self.run.execute(self.workflow)
            self._finished(record.result)
        except run_once.PreflightRefused:
            record.error = "cancelled at the preflight"
            self.message.setText("Run cancelled: nothing was sent.")
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

    async def interrupt(self) -> None:
        run = self.run
        if run is None:
            return
        busy = self.progress.busy()
        self.message.setText(
            f"Interrupting: asking {', '.join(busy) or 'every participant'} to stop (a node "
            "that is running finishes first)…"
        )
        stopped = await run.interrupt()
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
        self._tasks.spawn(self._close_after_asking(), "closing")

    async def _close_after_asking(self) -> None:
        if await self.stop_run_if_asked():
            self._closing = True
            self.close()
            self._closing = False

    async def test_fleet(self) -> None:
        self._set_busy(True)
        service = self._service()
        master, workers = service.participants()
        self.progress.begin([master, *workers])
        self.message.setText("Test fleet: a tiny model-free image on every participant…")
        try:
            reports = await service.test_fleet(self.show_progress)
        except (ComfyFleetError, aiohttp.ClientError, OSError) as exc:
            self._error(f"The test could not run: {exc}")
        else:
            self._show_canary(reports)
        finally:
            self._set_busy(False)

    # progress

    def show_progress(self, progress: Progress) -> None:
        self.progress.show_progress(progress)

    def _tick(self) -> None:
        """Who is still waiting or running shows for how long; the worker list its states."""
        self._show_worker_states()
        self.progress.tick()

    def _finished(self, result: RunResult) -> None:
        self.progress.stop_clock()
        delivered = list(dict.fromkeys(o.participant or "?" for o in result.outputs))
        if result.outputs:
            head = f"Done: {len(result.outputs)} image(s) from {', '.join(delivered)}."
        else:
            head = "Done, but no image came back (does the workflow save any?)."
        lines = [head, *(f"⚠ {w}" for w in result.warnings)]
        self.message.setText("\n".join(lines))
        self.noticeRaised.emit(Notice.RUN_FINISHED, f"Run finished: {self.workflow_name}", head)

    def _show_canary(self, reports: list[CanaryReport]) -> None:
        self.progress.show_canary(reports)
        good = sum(r.delivered for r in reports)
        lines = [f"Test fleet: {good} of {len(reports)} participants delivered."]
        lines += [f"✘ {r.name}: {r.error}" for r in reports if not r.delivered]
        self.message.setText("\n".join(lines))

    # results

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
        self._set_busy(self.run is not None)
        self.gallery.show_outputs(result.outputs if result else ())
        if result is not None:
            self._tasks.spawn(self._load_images(result.outputs), "loading the images")

    async def _load_images(self, outputs: tuple[Output, ...]) -> None:
        url = self.config.master.url
        for number, output in enumerate(outputs):
            try:
                data = await fetch_image(self._session(), url, output.image)
            except (aiohttp.ClientError, OSError) as exc:
                self.gallery.set_image(number, None, str(exc))
                continue
            self.gallery.set_image(number, data)

    def shown_result(self) -> RunResult | None:
        row = self.runs.currentRow()
        return self.history[row].result if 0 <= row < len(self.history) else None

    async def save_all(self, folder: Path | None = None) -> None:
        result = self.shown_result()
        if result is None or not result.outputs:
            return
        if folder is None:
            folder = await choose_path(self, "Save all images into", QFileDialog.FileMode.Directory)
            if folder is None:
                return
        saved = await save_outputs(self._session(), self.config.master.url, result, folder)
        self.saved_to = folder
        self.gallery.mark_saved(saved)
        self._set_busy(self.run is not None)
        self.message.setText(f"Saved {len(saved)} image(s) into {folder}.")

    def _open_folder(self) -> None:
        if self.saved_to is not None:
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.saved_to)))

    def _set_busy(self, busy: bool) -> None:
        shown = self.shown_result()
        self.buttons["Run"].setEnabled(not busy and self.workflow is not None)
        self.buttons["Interrupt"].setEnabled(busy)
        self.buttons["Test fleet"].setEnabled(not busy)
        self.buttons["Open workflow…"].setEnabled(not busy)
        self.buttons["Open folder"].setEnabled(self.saved_to is not None)
        self.buttons["Save all…"].setEnabled(shown is not None and bool(shown.outputs))

    def _error(self, text: str) -> None:
        self.message.setText(
            f"<span style='color:#d93025'>{html.escape(text)}</span>".replace("\n", "<br>")
        )
