"""The real window, real services, simulated workers: the table and the tray tell the truth."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from PySide6.QtCore import QSortFilterProxyModel, Qt
from PySide6.QtWidgets import QApplication

from app.core.config import AppSettings, FleetConfig, MasterConfig, WorkerConfig, WorkerKind
from app.core.health import WorkerState
from app.services.gpus import GpuReader
from app.sim.fleet import SimInstance, free_port
from app.ui.row_text import Column
from app.ui.tray import FleetHealth, fleet_health
from app.ui.worker_dialog import WorkerDialog
from tests.fakes.nvml import FakeNvml
from tests.ui.helpers import cell, desktop_with
from tests.waiting import until


@pytest.mark.asyncio
async def test_live_table_and_tray_follow_the_fleet(
    qapp: QApplication,
    sim_factory: Callable[..., SimInstance],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from PySide6.QtWidgets import QSystemTrayIcon

    monkeypatch.setattr(QSystemTrayIcon, "isSystemTrayAvailable", staticmethod(lambda: True))
    master = sim_factory("master", args=["--sim-vram-gb", "24"])
    big = sim_factory("big", args=["--sim-vram-gb", "80", "--sim-device", "NVIDIA H100"])
    config = FleetConfig(
        master=MasterConfig(port=master.port, gpu="0"),
        workers=(
            WorkerConfig("big", WorkerKind.REMOTE, port=big.port),
            WorkerConfig("gone", WorkerKind.REMOTE, port=free_port()),
        ),
        app=AppSettings(poll_interval_s=0.3, busy_poll_interval_s=0.2, offline_backoff_max_s=0.6),
    )
    gpu_reader = GpuReader(FakeNvml.recorded("gpu-h200", "t2_after_jobs"))
    app = desktop_with(qapp, tmp_path, config, gpu_reader=gpu_reader)
    app.window.show()
    await app.start()
    try:
        await until(
            lambda: (
                cell(app, "big", Column.STATE) == "online"
                and cell(app, "gone", Column.STATE) == "offline"
            )
        )
        assert cell(app, "big", Column.VRAM).endswith("/80.0 GiB")
        assert "H100" in cell(app, "big", Column.DEVICE)
        assert "connection refused" in cell(app, "gone", Column.REASON)
        await until(lambda: cell(app, "master", Column.UTIL) != "n/a")
        assert cell(app, "master", Column.UTIL) == "0%"  # NVML reading of GPU 0
        assert cell(app, "big", Column.UTIL) == "n/a"  # remote: no NVML there
        assert app.tray is not None
        await until(lambda: app.tray is not None and app.tray.health is FleetHealth.DEGRADED)
        assert app.tray.toolTip() == "ComfyFleet: 1/2 workers online"  # workers, not the master
        assert list(app.window.gpu_panel.gpu_charts) == ["GPU-9664e333-53f7-c99e-3697-bff5cb199420"]
        big.stop()
        await until(lambda: cell(app, "big", Column.STATE) == "offline", timeout=5)
        await until(lambda: app.tray is not None and app.tray.health is FleetHealth.DEGRADED)
        proxy = app.window.table.model()
        assert isinstance(proxy, QSortFilterProxyModel)
        app.window.table.sortByColumn(Column.NAME, Qt.SortOrder.DescendingOrder)
        names = [proxy.index(r, Column.NAME).data() for r in range(proxy.rowCount())]
        assert names == ["master", "gone", "big"]
    finally:
        await app.stop()
        app.instance.close()
        if app.tray:
            app.tray.hide()
        app.window.set_close_to_tray(False)
        app.window.close()


def test_fleet_health_rules() -> None:
    from app.core.health import WorkerHealth

    def h(name: str, kind: str, state: WorkerState) -> WorkerHealth:
        return WorkerHealth(name, kind, "http://x", state)

    up, down = WorkerState.ONLINE, WorkerState.OFFLINE
    assert fleet_health([h("master", "master", up), h("a", "local", up)]) == (
        FleetHealth.GOOD,
        "1/1 workers online",
    )
    assert fleet_health([h("master", "master", down), h("a", "local", up)]) == (
        FleetHealth.ERROR,
        "master offline; 1/1 workers online",
    )
    assert (
        fleet_health([h("master", "master", up), h("a", "local", down)])[0] is FleetHealth.DEGRADED
    )
    assert fleet_health([h("master", "master", down), h("a", "local", up)])[0] is FleetHealth.ERROR
    assert fleet_health([h("master", "master", up), h("a", "r", WorkerState.DISABLED)]) == (
        FleetHealth.GOOD,
        "no workers enabled",
    )


def test_worker_dialog_fills_runpod_host_and_validates(qapp: QApplication) -> None:
    config = FleetConfig(workers=(WorkerConfig("gpu1", WorkerKind.LOCAL, port=8189),))

    async def never(url: str) -> str:
        raise AssertionError("not called")

    dialog = WorkerDialog(config, never)
    assert dialog.port.value() == 8190  # next free local port
    dialog.kind.setCurrentIndex(2)  # Cloud
    dialog.name.setText("pod")
    dialog.host.setText("https://abcd1234efgh-8188.proxy.runpod.net/")
    dialog.host.editingFinished.emit()
    assert (dialog.host.text(), dialog.port.value()) == ("abcd1234efgh-8188.proxy.runpod.net", 443)
    assert not dialog.gpu.isEnabled()
    dialog.accept()
    assert dialog.result_worker is not None and dialog.result_worker.kind is WorkerKind.CLOUD
    again = WorkerDialog(config, never)
    again.name.setText("gpu1")
    again.accept()
    assert "two workers are called 'gpu1'" in again.report.text()
    assert again.result_worker is None


@pytest.mark.asyncio
async def test_dialog_test_connection_reports_what_it_found(
    qapp: QApplication, sim_factory: Callable[..., SimInstance]
) -> None:
    from app.services.comfy_client import ComfyClient, check_connection

    worker = sim_factory("w", args=["--sim-device", "NVIDIA RTX A6000", "--sim-vram-gb", "48"])
    bare = sim_factory("bare", args=["--sim-no-distributed"])
    client = ComfyClient()
    try:
        dialog = WorkerDialog(FleetConfig(), lambda url: check_connection(client, url))
        dialog.kind.setCurrentIndex(1)  # Remote
        dialog.name.setText("lan")
        dialog.host.setText("127.0.0.1")
        reports = []
        for port in (worker.port, bare.port, free_port()):
            dialog.port.setValue(port)
            dialog.test_button.click()
            await until(lambda: dialog.test_button.isEnabled())
            reports.append(dialog.report.text())
    finally:
        await client.close()
    assert reports[0].startswith("✔ ComfyUI 0.3.64 on cuda:0 NVIDIA RTX A6000")
    assert "ComfyUI-Distributed answers" in reports[0] and "48.0 GiB" in reports[0]
    assert "NOT installed" in reports[1]
    assert reports[2].startswith("✘") and "--listen" in reports[2]
    _everything_fits(dialog)


def _everything_fits(dialog: WorkerDialog) -> None:
    """A Runpod host, five port digits and the wrapped hints are shown whole, not clipped."""
    dialog.kind.setCurrentIndex(2)  # Cloud
    dialog.host.setText("abcd1234efgh-8188.proxy.runpod.net")
    dialog.port.setValue(65535)
    dialog.show()
    dialog.adjustSize()
    host_text = dialog.host.fontMetrics().horizontalAdvance(dialog.host.text())
    assert host_text < dialog.host.width() - 8
    assert dialog.port.width() >= dialog.port.sizeHint().width()
    for label in (dialog.host_hint, dialog.report):
        assert label.height() >= label.heightForWidth(label.width())
    dialog.close()


@pytest.mark.asyncio
async def test_worker_dialog_refuses_extra_args_comfyui_would_refuse(
    qapp: QApplication, tmp_path: Path
) -> None:
    from app.services.comfy_install import HelpReader, check_instance_args
    from app.sim.fleet import create_sim_install

    install = create_sim_install(tmp_path / "ComfyUI")
    config = FleetConfig(master=MasterConfig(comfyui_dir=str(install)))
    reader = HelpReader()

    async def check(new: FleetConfig, name: str) -> None:
        check_instance_args(new, name, reader)

    async def never(url: str) -> str:
        raise AssertionError("not called")

    dialog = WorkerDialog(config, never, args_check=check)
    dialog.name.setText("w1")
    dialog.extra_args.setText("--lowvarm")
    dialog.accept()
    await until(lambda: dialog.ok_button.isEnabled() and "✘" in dialog.report.text())
    assert "no flag --lowvarm: did you mean --lowvram?" in dialog.report.text()
    assert dialog.result_worker is None
    dialog.extra_args.setText("--lowvram")
    dialog.accept()
    await until(lambda: dialog.result_worker is not None)
    assert dialog.result_worker is not None and dialog.result_worker.extra_args == ("--lowvram",)


@pytest.mark.asyncio
async def test_a_remote_workers_log_comes_from_its_own_comfyui(
    qapp: QApplication, sim_factory: Callable[..., SimInstance], tmp_path: Path
) -> None:
    from app.sim.fleet import http_json
    from app.ui.log_viewer import LogViewer
    from tests.integration.sim_client import workflow

    master = sim_factory("master")
    remote = sim_factory("lan", args=["--sim-name", "lan"])
    config = FleetConfig(
        master=MasterConfig(port=master.port),
        workers=(WorkerConfig("lan", WorkerKind.REMOTE, port=remote.port),),
    )
    app = desktop_with(
        qapp, tmp_path, config, gpu_reader=GpuReader(FakeNvml.recorded("cpu", "t0_idle"))
    )
    await app.start()
    try:
        app.window.table.selectRow(1)  # the details pane shows the end of its log too
        await until(lambda: "To see the GUI go to" in app.window.details.log.toPlainText())
        viewer = LogViewer("lan", app.logs, app.window)
        viewer.show()
        await until(lambda: "To see the GUI go to" in viewer.text.toPlainText())
        assert not viewer.open_file.isEnabled()  # its file is on its own machine
        await until(lambda: "live" in viewer.where.text())
        http_json(
            f"{remote.url}/prompt", {"prompt": workflow("workflow_nomodel"), "client_id": "x"}
        )
        await until(lambda: "Prompt executed in" in viewer.text.toPlainText())
        assert "got prompt" in viewer.text.toPlainText()
        viewer.close()
    finally:
        await app.stop()
