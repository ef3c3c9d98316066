"""The window starting, watching and stopping simulated installs through the supervisor."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import psutil
import pytest
from PySide6.QtCore import QItemSelectionModel
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QApplication

from app.core.config import AppSettings, FleetConfig, MasterConfig, WorkerConfig, WorkerKind
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
        select(app, "master")
        trigger(app, "stop")
        await until(
            lambda: (
                app.supervisor.status("master").state  # type: ignore[union-attr]
                is InstanceState.STOPPED
            )
        )
        await until(lambda: cell(app, "master", Column.STATE) == "stopped")
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
