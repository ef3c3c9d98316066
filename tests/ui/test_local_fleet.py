"""The window starting, watching and stopping simulated installs through the supervisor."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from unittest.mock import patch

import psutil
import pytest
from PySide6.QtCore import QItemSelectionModel
from PySide6.QtGui import QAction, QDesktopServices
from PySide6.QtWidgets import QApplication

from app.core.config import AppSettings, FleetConfig, MasterConfig, WorkerConfig, WorkerKind
from app.core.workflow import PreflightResult
from app.services.supervisor import InstanceState
from app.sim.fleet import create_sim_install, free_port
from app.ui.application import DesktopApp
from app.ui.row_text import Column
from tests.ui.helpers import cell, desktop_with, told
from tests.waiting import until


def select(app: DesktopApp, name: str) -> None:
    table = app.window.table
    proxy = table.model()
    row = next(r for r in range(proxy.rowCount()) if proxy.index(r, Column.NAME).data() == name)
    table.selectionModel().select(
        proxy.index(row, 0),
        QItemSelectionModel.SelectionFlag.ClearAndSelect | QItemSelectionModel.SelectionFlag.Rows,
    )


def trigger(app: DesktopApp, name: str) -> None:
    action = app.window.findChild(QAction, name)
    assert action is not None, name
    action.trigger()


@pytest.mark.asyncio
async def test_start_crash_logs_stop_and_quit(qapp: QApplication, tmp_path: Path) -> None:
    install = create_sim_install(tmp_path / "ComfyUI")
    config = FleetConfig(
        master=MasterConfig(comfyui_dir=str(install), port=free_port(), gpu="cpu"),
        workers=(
            WorkerConfig("gpu1", WorkerKind.LOCAL, port=free_port(), gpu="0"),
            WorkerConfig("lan", WorkerKind.REMOTE, host="127.0.0.1", port=free_port()),
        ),
        app=AppSettings(poll_interval_s=0.3, busy_poll_interval_s=0.2),
    )
    app = desktop_with(qapp, tmp_path, config)
    notes: list[str] = []
    app.window.noticeRaised.connect(lambda notice, title, text: notes.append(f"{title}: {text}"))
    app.window.show()
    await app.start()
    try:
        assert cell(app, "master", Column.PROCESS) == "launchable"
        assert cell(app, "lan", Column.PROCESS) == "—"
        select(app, "lan")
        start = app.window.findChild(QAction, "start")
        assert start is not None and not start.isEnabled()  # for a remote worker: says why
        assert "lan runs elsewhere" in start.toolTip()
        select(app, "gpu1")
        assert start.isEnabled()
        trigger(app, "start_all")
        await until(
            lambda: (
                cell(app, "master", Column.STATE) == "online"
                and cell(app, "gpu1", Column.STATE) == "online"
            )
        )
        pid = app.supervisor.status("gpu1").pid  # type: ignore[union-attr]
        assert cell(app, "gpu1", Column.PROCESS) == f"pid {pid}"
        os.kill(pid, signal.SIGKILL)  # type: ignore[arg-type]
        await until(lambda: any("gpu1 crashed" in n for n in notes))
        assert "killed by signal" in notes[0]
        await until(
            lambda: (
                "1 restart(s)" in cell(app, "gpu1", Column.PROCESS)
                and cell(app, "gpu1", Column.STATE) == "online"
                and cell(app, "gpu1", Column.REASON).startswith("last crash: killed")
            )
        )
        await until(lambda: any("gpu1 is back" in n for n in notes))
        select(app, "gpu1")
        trigger(app, "logs")
        (viewer,) = app.window.log_viewers
        assert "To see the GUI go to" in viewer.text.toPlainText()
        viewer.search.setText("Device:")
        assert viewer.find_next()
        assert viewer.launch.count() == 2  # this launch, and the one that was killed
        viewer.launch.setCurrentIndex(1)
        assert "To see the GUI go to" in viewer.text.toPlainText()
        assert viewer.where.text().endswith(".log.1")
        with patch.object(QDesktopServices, "openUrl", return_value=False):
            assert not viewer.open_in_desktop()  # no program for .log files here: it says so
        assert "No program on this desktop is set to open log files" in await told()
        select(app, "master")
        trigger(app, "stop")
        await until(
            lambda: (
                app.supervisor.status("master").state  # type: ignore[union-attr]
                is InstanceState.STOPPED
            )
        )
        await until(lambda: cell(app, "master", Column.STATE) == "stopped")
        app.open_jobs()  # a preflight's advice: the state of the process ComfyFleet runs
        assert app.jobs_window is not None
        refused = "could not ask it: connection refused"
        advice = app.jobs_window.advice
        assert advice(PreflightResult("master", error=refused)) == (
            "Start it (or Start all), then run again"
        )
        assert "--listen" in advice(PreflightResult("lan", error=refused))
        app.jobs_window.close()
        running = app.supervisor.status("gpu1").pid  # type: ignore[union-attr]
    finally:
        for viewer in list(app.window.log_viewers):
            viewer.close()
        app.quit()
        await app.stop()  # what _run does after Quit
        app.instance.close()
        app.window.close()
    assert running is not None
    assert (
        not psutil.pid_exists(running) or psutil.Process(running).status() == psutil.STATUS_ZOMBIE
    )  # Quit stopped it


@pytest.mark.asyncio
async def test_a_bad_launch_argument_is_shown_and_notified_not_retried(
    qapp: QApplication, tmp_path: Path
) -> None:
    install = create_sim_install(tmp_path / "ComfyUI")
    config = FleetConfig(
        master=MasterConfig(comfyui_dir=str(install), port=free_port(), gpu="cpu"),
        workers=(
            WorkerConfig(
                "w1", WorkerKind.LOCAL, port=free_port(), gpu="cpu", extra_args=("--lowvarm",)
            ),
        ),
    )
    app = desktop_with(qapp, tmp_path, config)
    notes: list[str] = []
    app.window.noticeRaised.connect(lambda notice, title, text: notes.append(f"{title}: {text}"))
    await app.start()
    try:
        select(app, "w1")
        trigger(app, "start")
        await until(lambda: "bad launch argument" in cell(app, "w1", Column.REASON))
        assert "no flag --lowvarm: did you mean --lowvram?" in cell(app, "w1", Column.REASON)
        assert cell(app, "w1", Column.STATE) == "crashed"
        assert "Cannot start w1: bad launch argument" in await told()
        assert any(n.startswith("w1 crashed: bad launch argument") for n in notes)
        status = app.supervisor.status("w1")
        assert status is not None and status.state is InstanceState.CRASHED and status.pid is None
    finally:
        await app.stop()
        app.instance.close()
        app.window.close()


@pytest.mark.asyncio
async def test_open_dialogs_do_not_stop_the_watching(qapp: QApplication, tmp_path: Path) -> None:
    """Each dialog (and question) awaits its answer on the one event loop: while it is open a
    killed worker is still noticed and restarted, and Quit still ends everything."""
    from PySide6.QtWidgets import QDialog, QMessageBox

    install = create_sim_install(tmp_path / "ComfyUI")
    config = FleetConfig(
        master=MasterConfig(comfyui_dir=str(install), port=free_port(), gpu="cpu"),
        workers=(WorkerConfig("w1", WorkerKind.LOCAL, port=free_port(), gpu="cpu"),),
        app=AppSettings(poll_interval_s=0.3, busy_poll_interval_s=0.2),
    )
    app = desktop_with(qapp, tmp_path, config)
    await app.start()

    def open_dialogs() -> list[QDialog]:
        return [w for w in qapp.topLevelWidgets() if isinstance(w, QDialog) and w.isVisible()]

    try:
        select(app, "w1")
        trigger(app, "start")
        await until(lambda: cell(app, "w1", Column.STATE) == "online")
        for opener in ("add_worker", "settings", "remove"):
            select(app, "w1")
            trigger(app, opener)
            await until(lambda: bool(open_dialogs()))
            status = app.supervisor.status("w1")
            assert status is not None and status.pid is not None
            before = status.restarts
            os.kill(status.pid, signal.SIGKILL)
            await until(
                lambda b=before: (
                    (s := app.supervisor.status("w1")) is not None
                    and s.restarts == b + 1
                    and s.state is InstanceState.READY
                )
            )
            for dialog in open_dialogs():  # cancel: the worker stays
                if isinstance(dialog, QMessageBox):
                    dialog.button(QMessageBox.StandardButton.No).click()
                else:
                    dialog.reject()
            await until(lambda: not open_dialogs())
        assert app.keeper.config.worker("w1") is not None
        app.quit()
        assert app.quit_requested.is_set()
        pid = app.supervisor.status("w1").pid  # type: ignore[union-attr]
    finally:
        await app.stop()
        app.instance.close()
        app.window.close()
    assert pid is not None and (
        not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    )
