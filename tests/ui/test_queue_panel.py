"""The Queue panel on a live simulated fleet: progress and ETA while a job runs; cancel; files
dropped on it and on the jobs window."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication, QWidget

from app.core.config import AppSettings, FleetConfig, MasterConfig, WorkerConfig, WorkerKind
from app.core.queue import ItemState, JobSpec
from app.core.workflow import load_workflow
from app.sim.fleet import SimInstance, http_json
from app.ui.queue_panel import JOB_COLUMNS, AddJobDialog
from tests.conftest import RECORDINGS
from tests.ui.helpers import desktop_with
from tests.waiting import until

NOMODEL = RECORDINGS / "workflows" / "workflow_nomodel.json"


def panel_cell(app, row: int, column: int, role: int = Qt.ItemDataRole.DisplayRole) -> object:  # type: ignore[no-untyped-def]
    model = app.queue_panel.jobs
    return model.data(model.index(row, column), role)


@pytest.mark.asyncio
async def test_the_queue_panel_shows_progress_and_eta_while_a_job_runs(
    qapp: QApplication, sim_factory: Callable[..., SimInstance], tmp_path: Path
) -> None:
    master = sim_factory("master", args=["--sim-time-scale", "4"])
    worker = sim_factory("w1", args=["--sim-time-scale", "2"])
    config = FleetConfig(
        master=MasterConfig(port=master.port),
        workers=(WorkerConfig("w1", WorkerKind.REMOTE, port=worker.port),),
        app=AppSettings(poll_interval_s=0.3, busy_poll_interval_s=0.2),
    )
    app = desktop_with(qapp, tmp_path, config)
    app.window.show()
    await app.start()
    try:
        await until(lambda: app.dispatcher is not None)
        assert app.queue_panel.dispatcher_label.text() == "Dispatched by this window."
        workflow = load_workflow(NOMODEL.read_text(encoding="utf-8"))
        app.add_job(JobSpec("noise", workflow, 16, seed=5))
        await until(lambda: app.queue_panel.jobs.rowCount() == 1)
        await until(lambda: panel_cell(app, 0, JOB_COLUMNS.index("State")) == "running")
        # an ETA once something finished, and the bar's own numbers
        await until(
            lambda: panel_cell(app, 0, JOB_COLUMNS.index("ETA")) not in ("—", ""), timeout=30
        )
        ended, total = panel_cell(app, 0, JOB_COLUMNS.index("Progress"), Qt.ItemDataRole.UserRole)  # type: ignore[misc]
        assert total == 16 and 0 < ended < 16
        assert str(panel_cell(app, 0, JOB_COLUMNS.index("ETA"))).endswith("s")
        app.queue_panel.jobs_view.selectRow(0)
        await until(lambda: app.queue_panel.items.rowCount() == 16)
        await until(lambda: panel_cell(app, 0, JOB_COLUMNS.index("State")) == "done", timeout=60)
        assert {i.state for i in app.queue.store.items(1)} == {ItemState.DONE}
        assert (
            app.queue_panel.jobs.data(app.queue_panel.jobs.index(0, JOB_COLUMNS.index("Progress")))
            == "16/16"
        )
        assert set(app.queue_panel.charts) == {"master", "w1"}  # images per minute, per GPU
        assert app.tray is None or app.tray.queued == 0
    finally:
        app.quit_now()
        await app.stop()


def test_the_add_dialog_reads_count_seed_and_participants(qapp: QApplication) -> None:
    dialog = AddJobDialog(NOMODEL, load_workflow(NOMODEL.read_text()))
    dialog.count.setValue(3)
    dialog.seed.setText("77")
    dialog.workers.setText("w1, master")
    spec = dialog.spec()
    assert (spec.count, spec.seed, spec.workers, spec.name) == (
        3,
        77,
        ("w1", "master"),
        "workflow_nomodel",
    )
    dialog.seed.setText("seven")
    with pytest.raises(ValueError):
        dialog.spec()


def drop(widget: QWidget, path: Path) -> None:
    """A file dropped from a file manager: drag-enter, then drop."""
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    point = QPointF(widget.rect().center())
    enter = QDragEnterEvent(
        point.toPoint(),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    QApplication.sendEvent(widget, enter)
    assert enter.isAccepted(), f"{path.name} refused on entering"
    event = QDropEvent(
        point,
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    QApplication.sendEvent(widget, event)


@pytest.mark.asyncio
async def test_a_ui_format_workflow_dropped_on_the_panel_and_the_jobs_window(
    qapp: QApplication, sim_factory: Callable[..., SimInstance], tmp_path: Path
) -> None:
    master = sim_factory("master")
    config = FleetConfig(master=MasterConfig(port=master.port))
    app = desktop_with(qapp, tmp_path, config)
    app.window.show()
    await app.start()
    subgraph = RECORDINGS / "ui_workflows" / "c12_subgraph_basic" / "ui.json"
    try:
        await until(lambda: app.dispatcher is not None)
        drop(app.queue_panel, subgraph)
        await until(
            lambda: any(
                isinstance(w, AddJobDialog) and w.isVisible() for w in qapp.topLevelWidgets()
            )
        )
        dialog = next(
            w for w in qapp.topLevelWidgets() if isinstance(w, AddJobDialog) and w.isVisible()
        )
        assert set(dialog.workflow) == {"1", "4", "5:2", "5:3"}  # converted with the master's nodes
        dialog.count.setValue(2)
        dialog.accept()
        await until(lambda: app.queue_panel.jobs.rowCount() == 1)
        await until(lambda: panel_cell(app, 0, JOB_COLUMNS.index("State")) == "done", timeout=60)
        prompts = [e["prompt"][2] for e in http_json(f"{master.url}/history").values()]
        assert len(prompts) == 2 and all(p["4"]["inputs"]["images"] == ["5:3", 0] for p in prompts)

        app.open_jobs()
        window = app.jobs_window
        assert window is not None
        drop(window, subgraph)
        await until(lambda: window.buttons["Run"].isEnabled())
        assert window.file_label.text() == "ui.json — a UI-format workflow, converted, 4 nodes"
    finally:
        app.quit_now()
        await app.stop()
