"""The Queue panel: jobs with a progress bar and ETA, the selected job's items, images per
minute per GPU; add a job (or drop a workflow file on it), cancel, retry, pause."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from PySide6.QtCore import (
    QAbstractTableModel,
    Qt,
    Signal,
)
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QSplitter,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionProgressBar,
    QStyleOptionViewItem,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from app.core.errors import ComfyFleetError
from app.core.queue import ENDED, ItemState, JobSpec, QueueError, duration_text
from app.core.workflow import Workflow
from app.core.workflow_file import WorkflowFile
from app.services.queue_db import Item, Job, QueueDb
from app.services.workflow_source import read_workflow_file
from app.ui.ask import WORKFLOW_FILTER, answer_of, choose_path, dropped_workflows
from app.ui.history import KEEP, SAMPLE_S, Chart
from app.ui.narrow import ColumnsThatFit, button_row
from app.ui.rows_model import Index, RowsModel

JOB_COLUMNS = ("Name", "Progress", "ETA", "State", "Job", "By")  # what matters first: docks
# are narrow (the columns that do not fit are left out)
ITEM_COLUMNS = ("Item", "Seed", "State", "On", "Why")
MAX_CHARTS = 8


class JobsModel(RowsModel):
    columns = JOB_COLUMNS

    def __init__(self) -> None:
        super().__init__()
        self.now = time.time()

    @property
    def jobs(self) -> list[Job]:
        return self.rows

    def show(self, rows: Sequence[Job]) -> None:
        self.now = time.time()
        super().show(rows)

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        job = self.jobs[index.row()]
        ended = job.count(*ENDED)
        if role == Qt.ItemDataRole.UserRole:
            return (ended, job.total)
        if role == Qt.ItemDataRole.ToolTipRole:
            return job.note or f"{job.out_dir}"
        if role != Qt.ItemDataRole.DisplayRole:
            return None
        failed = job.count(ItemState.FAILED)
        return (
            job.name,
            f"{job.count(ItemState.DONE)}/{job.total}",
            "" if job.ended else duration_text(job.eta_s(self.now)),
            job.state + (f" · {failed} failed" if failed else ""),
            str(job.id),
            job.queued_by or "",
        )[index.column()]


class ItemsModel(RowsModel):
    columns = ITEM_COLUMNS

    @property
    def items(self) -> list[Item]:
        return self.rows

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        item = self.items[index.row()]
        if role not in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.ToolTipRole):
            return None
        return (
            str(item.index),
            "" if item.seed is None else str(item.seed),
            item.state.value + (f" (try {item.attempts + 1})" if item.attempts else ""),
            item.participant or "",
            item.error or "",
        )[index.column()]


class ProgressDelegate(QStyledItemDelegate):
    """The Progress column as a bar: items ended of the job's total."""

    def paint(self, painter: Any, option: QStyleOptionViewItem, index: Index) -> None:
        ended, total = index.data(Qt.ItemDataRole.UserRole)
        bar = QStyleOptionProgressBar()
        bar.rect = option.rect.adjusted(2, 3, -2, -3)
        bar.minimum, bar.maximum, bar.progress = 0, max(1, total), ended
        bar.text, bar.textVisible = index.data(), True
        bar.state = option.state
        option.widget.style().drawControl(QStyle.ControlElement.CE_ProgressBar, bar, painter)


class AddJobDialog(QDialog):
    def __init__(self, path: Path, workflow: Workflow, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Add a job to the queue")
        self.setMinimumWidth(460)
        self.path, self.workflow = path, workflow
        self.count = QSpinBox()
        self.count.setRange(1, 100_000)
        self.count.setValue(8)
        self.seed = QLineEdit()
        self.seed.setPlaceholderText("the workflow's own")
        self.priority = QSpinBox()
        self.priority.setRange(-100, 100)
        self.workers = QLineEdit()
        self.workers.setPlaceholderText("every participant (or names, comma-separated)")
        form = QFormLayout(self)
        form.addRow("Workflow", QLabel(str(path)))
        form.addRow("Images (seeds)", self.count)
        form.addRow("First seed", self.seed)
        form.addRow("Priority", self.priority)
        form.addRow("Only on", self.workers)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def spec(self) -> JobSpec:
        """The job as asked (QueueError/ValueError say what is wrong)."""
        seed = self.seed.text().strip()
        names = tuple(n.strip() for n in self.workers.text().split(",") if n.strip())
        return JobSpec(
            self.path.stem,
            self.workflow,
            self.count.value(),
            int(seed) if seed else None,
            workers=names or None,
            priority=self.priority.value(),
        )


class QueuePanel(QWidget):
    """Shows the store; changes go through `act` (the dispatcher when this process holds it)."""

    addRequested = Signal(object)  # JobSpec
    cancelRequested = Signal(int)
    changed = Signal()  # after a change made here (the dispatcher acts on it at once)

    def __init__(
        self,
        store: QueueDb,
        spawn: Callable[[Any, str], object],
        prompt_of: Callable[[WorkflowFile], Awaitable[Workflow]],
    ) -> None:
        """`prompt_of`: the prompt a workflow file runs (UI-format ones converted)."""
        super().__init__()
        self.setAcceptDrops(True)
        self.store = store
        self._spawn = spawn
        self._prompt_of = prompt_of
        self.jobs = JobsModel()
        self.items = ItemsModel()
        self.dispatcher_label = QLabel()
        self.dispatcher_label.setWordWrap(True)
        self.jobs_view = self._table(self.jobs)
        self.jobs_view.setItemDelegateForColumn(
            JOB_COLUMNS.index("Progress"), ProgressDelegate(self.jobs_view)
        )
        self.items_view = self._table(self.items)
        self.charts_box = QVBoxLayout()
        self.charts: dict[str, Chart] = {}
        self.add_button = self._button("Add job…", self._choose)
        self.cancel_button = self._button("Cancel", self._cancel)
        self.retry_button = self._button("Retry failed", self._retry)
        self.pause_button = self._button("Pause job", self._pause_job)
        self.pause_all = self._button("Pause queue", self._pause_queue)
        buttons = button_row(
            self.add_button, self.cancel_button, self.retry_button, self.pause_button,
            self.pause_all,
        )  # fmt: skip
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.jobs_view)
        split.addWidget(self.items_view)
        charts = QWidget()
        charts.setLayout(self.charts_box)
        split.addWidget(charts)
        layout = QVBoxLayout(self)
        layout.addWidget(self.dispatcher_label)
        layout.addWidget(buttons)
        layout.addWidget(split, 1)
        hint = QLabel("Drop a workflow (.json) or an image ComfyUI made here to queue it.")
        hint.setObjectName("hint")
        hint.setWordWrap(True)
        layout.addWidget(hint)
        self.jobs_view.selectionModel().selectionChanged.connect(lambda *_: self._show_selected())
        self.refresh()

    @staticmethod
    def _table(model: QAbstractTableModel) -> QTableView:
        view = QTableView()
        view.setModel(model)
        view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        view.verticalHeader().hide()
        view.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        view.horizontalHeader().setStretchLastSection(True)
        ColumnsThatFit(view)
        return view

    @staticmethod
    def _button(text: str, slot: Callable[[], None]) -> QPushButton:
        button = QPushButton(text)
        button.clicked.connect(slot)
        return button

    def selected_job(self) -> Job | None:
        rows = self.jobs_view.selectionModel().selectedRows()
        return self.jobs.jobs[rows[0].row()] if rows else None

    def show_dispatcher(self, text: str) -> None:
        self.dispatcher_label.setText(text)

    def refresh(self) -> None:
        """Read the store again (cheap: counts come from an index)."""
        chosen = self.selected_job()
        selection = self.jobs_view.selectionModel()
        selection.blockSignals(True)  # the same row again is no new choice
        try:
            self.jobs.show(self.store.jobs())
            row = next(
                (n for n, j in enumerate(self.jobs.jobs) if chosen and j.id == chosen.id), None
            )
            if row is not None:
                self.jobs_view.selectRow(row)
        finally:
            selection.blockSignals(False)
        self._show_selected()
        self.pause_all.setText("Resume queue" if self.store.paused() else "Pause queue")
        self._show_rates()

    def _show_selected(self) -> None:
        job = self.selected_job()
        self.items.show(self.store.items(job.id) if job else [])
        self.cancel_button.setEnabled(job is not None and job.ended is None)
        self.retry_button.setEnabled(
            job is not None and job.count(ItemState.FAILED, ItemState.CANCELLED) > 0
        )
        self.pause_button.setEnabled(job is not None and job.ended is None)
        self.pause_button.setText("Resume job" if job is not None and job.paused else "Pause job")

    def _show_rates(self) -> None:
        """Images per minute per GPU over the last minutes: a line each."""
        now = time.time()
        finished = self.store.finished_since(now - KEEP * SAMPLE_S - 60)
        for name in list(finished)[:MAX_CHARTS]:
            if name not in self.charts:
                self.charts[name] = Chart(f"{name} images/min", "", 10, "#2e7d32")
                self.charts_box.addWidget(self.charts[name])
            times = finished[name]
            samples = [now - (KEEP - 1 - k) * SAMPLE_S for k in range(KEEP)]
            rates: list[float | None] = [
                float(sum(t - 60 < at <= t for at in times)) for t in samples
            ]
            top = max(10.0, max(r or 0 for r in rates))
            self.charts[name].show_values(rates, maximum=top)

    # actions

    def _choose(self) -> None:
        self._spawn(self._add_from_file(None), "adding a job")

    async def _add_from_file(self, path: Path | None) -> None:
        if path is None:
            path = await choose_path(self, "A workflow to queue", name_filter=WORKFLOW_FILTER)
            if path is None:
                return
        try:
            workflow = await self._prompt_of(read_workflow_file(path))
        except ComfyFleetError as exc:
            self.show_dispatcher(f"Not queued: {path.name}: {exc}")
            return
        dialog = AddJobDialog(path, workflow, self)
        try:
            if not await answer_of(dialog):
                return
            try:
                spec = dialog.spec()
            except (QueueError, ValueError) as exc:
                self.show_dispatcher(f"Not queued: {exc}")
                return
            self.addRequested.emit(spec)
        finally:
            dialog.deleteLater()

    def _cancel(self) -> None:
        job = self.selected_job()
        if job is not None:
            self.cancelRequested.emit(job.id)

    def _retry(self) -> None:
        job = self.selected_job()
        if job is not None:
            self.store.retry(job.id)
            self.changed.emit()

    def _pause_job(self) -> None:
        job = self.selected_job()
        if job is not None:
            self.store.set_paused(not job.paused, job.id)
            self.changed.emit()

    def _pause_queue(self) -> None:
        self.store.set_paused(not self.store.paused())
        self.changed.emit()

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if dropped_workflows(event.mimeData()):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        for path in dropped_workflows(event.mimeData()):
            self._spawn(self._add_from_file(path), "adding a dropped job")
        event.acceptProposedAction()
