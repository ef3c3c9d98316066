"""Two desktops' windows on one team queue (a real PostgreSQL server): each shows and controls
the same jobs; one dispatches, the other says who and takes over when that one quits."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from PySide6.QtWidgets import QApplication

from app.core.config import AppSettings, FleetConfig, MasterConfig
from app.core.queue import ItemState, JobSpec
from app.core.workflow import load_workflow
from app.services.host import here, user_at_host
from app.sim.fleet import SimInstance
from app.ui.queue_panel import JOB_COLUMNS
from tests.conftest import RECORDINGS
from tests.ui.helpers import desktop_with
from tests.ui.test_queue_panel import panel_cell
from tests.waiting import until

NOMODEL = RECORDINGS / "workflows" / "workflow_nomodel.json"


@pytest.mark.asyncio
async def test_two_windows_share_one_queue_on_the_server(
    qapp: QApplication, sim_factory: Callable[..., SimInstance], pg_url: str, tmp_path: Path
) -> None:
    master = sim_factory("master", args=["--sim-time-scale", "6"])
    config = FleetConfig(
        master=MasterConfig(port=master.port),
        app=AppSettings(poll_interval_s=0.3, busy_poll_interval_s=0.2, queue_url=pg_url),
    )
    ana = desktop_with(qapp, tmp_path / "ana", config)
    ben = desktop_with(qapp, tmp_path / "ben", config)
    await ana.start()
    await until(lambda: ana.dispatcher is not None)
    await ben.start()
    try:
        team = f"Team queue on {pg_url}. "
        holder = f"{team}The queue is dispatched by the window on {here()}."
        await until(lambda: ben.queue_panel.dispatcher_label.text().startswith(holder))
        workflow = load_workflow(NOMODEL.read_text(encoding="utf-8"))
        ben.add_job(JobSpec("from ben", workflow, 40, seed=1))
        await until(lambda: ana.queue_panel.jobs.rowCount() == 1)  # (told by NOTIFY)
        assert panel_cell(ana, 0, JOB_COLUMNS.index("By")) == user_at_host()
        await until(lambda: panel_cell(ana, 0, JOB_COLUMNS.index("State")) == "running")
        await until(lambda: panel_cell(ben, 0, JOB_COLUMNS.index("State")) == "running")
        job = ben.queue_panel.jobs.jobs[0].id
        ben.cancel_job(job)  # (ben does not dispatch: ana stops what is out)
        await until(lambda: panel_cell(ana, 0, JOB_COLUMNS.index("State")) == "cancelled")
        await until(lambda: ana.queue.store.job(job).ended is not None, timeout=30)
        states = {i.state for i in ana.queue.store.items(job)}
        assert states <= {ItemState.CANCELLED, ItemState.DONE} and ItemState.CANCELLED in states
        ana.quit_now()
        await ana.stop()
        await until(lambda: ben.dispatcher is not None, timeout=15)  # it takes over
        assert ben.queue_panel.dispatcher_label.text() == f"{team}Dispatched by this window."
    finally:
        for app in (ana, ben):
            app.quit_now()
            await app.stop()
