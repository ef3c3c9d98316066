"""The Cloud panel on the simulated Runpod: pods with their cost, a pod rented from the recipe
dialog joins the fleet once running, terminate asks naming the pod, Quit with pods running asks
whether to stop them."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtWidgets import QApplication, QMessageBox, QPlainTextEdit, QSystemTrayIcon

from app.core.cloud import CloudSettings
from app.core.cloud_fleet import pod_id_of
from app.core.config import AppSettings, FleetConfig
from app.services.runpod import API_KEY
from app.services.secrets import SecretStore
from app.ui.application import DesktopApp
from app.ui.cloud_panel import RecipeDialog
from tests.fakes.memory_keyring import MemoryKeyring
from tests.integration.runpod_helpers import KEY, SimRunpod, simulated_runpod
from tests.ui.helpers import answer, desktop_with
from tests.waiting import until


def logged_in_desktop(
    qapp: QApplication, tmp_path: Path, runpod: SimRunpod, idle_stop_min: float
) -> DesktopApp:
    """The app on the simulated Runpod, its key in an in-memory keyring, pods read often."""
    cloud = CloudSettings(
        runpod_api_url=runpod.url,
        runpod_proxy="http://127.0.0.1:{pod}",
        poll_s=0.3,
        idle_stop_min=idle_stop_min,
    )
    app = desktop_with(
        qapp, tmp_path, FleetConfig(app=AppSettings(poll_interval_s=0.3), cloud=cloud)
    )
    app.cloud.secrets = SecretStore(backend=MemoryKeyring())
    app.cloud.secrets.set(API_KEY, KEY)
    return app


@pytest.mark.asyncio
async def test_rent_watch_terminate_and_quit_with_pods_running(
    qapp: QApplication, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(QSystemTrayIcon, "isSystemTrayAvailable", staticmethod(lambda: True))
    backed = simulated_runpod(tmp_path / "pods")  # running pods answer through the proxy
    runpod = next(backed)
    try:
        await _rent_watch_terminate_and_quit(qapp, runpod, tmp_path)
    finally:
        backed.close()


async def _rent_watch_terminate_and_quit(
    qapp: QApplication, runpod: SimRunpod, tmp_path: Path
) -> None:
    app = logged_in_desktop(qapp, tmp_path, runpod, idle_stop_min=0)
    app.window.show()
    await app.start()
    panel = app.cloud.panel
    try:
        await until(lambda: panel.summary.text().startswith("Runpod: 0 pod(s), $0.00/h now"))
        panel.create_button.click()
        await until(
            lambda: any(
                isinstance(w, RecipeDialog) and w.isVisible() for w in qapp.topLevelWidgets()
            )
        )
        dialog = next(
            w for w in qapp.topLevelWidgets() if isinstance(w, RecipeDialog) and w.isVisible()
        )
        assert "RTX 4090 · 24 GB · $0.44/h" in dialog.gpu.currentText()
        dialog.name.setText("rented")
        dialog.accept()
        await until(lambda: panel.model.rowCount() == 1)
        await until(lambda: any(pod_id_of(w) for w in app.keeper.config.workers), timeout=30)
        (worker,) = app.keeper.config.workers
        assert worker.name == "rented"  # the running pod joined the fleet
        assert "$0.44/h now" in panel.summary.text()
        assert app.tray is not None
        await until(lambda: app.tray is not None and app.tray.cloud == "1 pod(s) $0.44/h")
        assert "1 pod(s) $0.44/h" in app.tray.toolTip()

        panel.view.selectRow(0)
        await until(lambda: panel.buttons["terminate"].isEnabled())
        panel.logs_button.click()
        await until(lambda: panel.log_dialog is not None and panel.log_dialog.isVisible())
        assert panel.log_dialog is not None
        logged = panel.log_dialog.findChild(QPlainTextEdit).toPlainText()
        assert "container running" in logged
        panel.log_dialog.close()
        panel.buttons["terminate"].click()
        question = await answer(QMessageBox.StandardButton.No)
        assert "Terminate pod rented (1× NVIDIA GeForce RTX 4090, $0.44/h)?" in question
        assert panel.model.rowCount() == 1  # not terminated: the answer was no

        app.quit()
        question = await answer(QMessageBox.StandardButton.Yes)  # "Stop them"
        assert question == "1 pod(s) still running ($0.44/h): rented."
        await until(lambda: app.quit_requested.is_set(), timeout=30)
    finally:
        app.quit_now()
        await app.stop()
    import aiohttp

    from app.services.runpod import RunpodClient

    async with aiohttp.ClientSession() as session:
        (pod,) = await RunpodClient(session, KEY, runpod.url).pods()
    assert pod.status == "EXITED" and pod.cost_per_h == 0.0


@pytest.mark.asyncio
async def test_a_rented_pod_runs_the_queue_then_the_idle_guard_stops_it(
    qapp: QApplication, tmp_path: Path
) -> None:
    """create → provisioning → running → the worker goes online → queue items run on it → idle
    → stopped by the guard, costing nothing afterwards."""
    from app.core.health import POD_STARTING, WorkerState
    from app.core.queue import JobSpec
    from app.core.workflow import load_workflow
    from tests.conftest import RECORDINGS

    backed = simulated_runpod(tmp_path / "pods")
    runpod = next(backed)
    app = logged_in_desktop(qapp, tmp_path, runpod, idle_stop_min=0.05)  # 3 s without work
    await app.start()
    try:
        await app.cloud.create(app.keeper.config.cloud.recipe, "worker-pod")
        states = set()

        def online() -> bool:
            health = app.monitor.health("worker-pod")
            if health is not None:
                states.add((health.state, health.error))
            return health is not None and health.state in (WorkerState.ONLINE, WorkerState.BUSY)

        await until(online, timeout=30)
        assert (WorkerState.STARTING, POD_STARTING) in states  # while the proxy answered 502
        workflow = load_workflow((RECORDINGS / "workflows" / "workflow_nomodel.json").read_text())
        app.add_job(JobSpec("on the pod", workflow, 4, seed=1, workers=("worker-pod",)))
        await until(lambda: app.queue.store.job_brief(1).ended is not None, timeout=60)
        assert {i.participant for i in app.queue.store.items(1)} == {"worker-pod"}
        await until(
            lambda: any("stopped worker-pod: no work" in d for d in app.cloud.watch.decisions),
            timeout=30,
        )
        await until(lambda: not app.keeper.config.workers)  # it left the fleet
        assert app.cloud.billing() == [] and app.cloud.watch.cost_per_h == 0.0
    finally:
        app.quit_now()
        await app.stop()
        backed.close()
