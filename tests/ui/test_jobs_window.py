"""The Jobs window on a simulated master and workers: run, gallery, history, preflight, canary."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from PySide6.QtWidgets import QApplication

from app.core.config import FleetConfig, MasterConfig, WorkerConfig, WorkerKind
from app.core.workflow import PreflightResult
from app.services.gpus import GpuReader
from app.sim.fleet import SimInstance, http_json
from app.ui.jobs_window import JobsWindow
from tests.conftest import RECORDINGS
from tests.fakes.nvml import FakeNvml
from tests.integration.sim_client import workflow
from tests.ui.helpers import desktop_with
from tests.waiting import until

pytestmark = pytest.mark.asyncio


def texts(window: JobsWindow, column: int) -> dict[str, str]:
    tree = window.progress
    return {
        tree.topLevelItem(i).text(0): tree.topLevelItem(i).text(column)
        for i in range(tree.topLevelItemCount())
    }


def gallery_labels(window: JobsWindow) -> list[str]:
    return [window.gallery.item(i).text() for i in range(window.gallery.count())]


async def test_run_gallery_history_preflight_and_canary(
    qapp: QApplication, sim_factory: Callable[..., SimInstance], tmp_path: Path
) -> None:
    master = sim_factory("master", args=["--sim-name", "master"])
    w1 = sim_factory("w1", args=["--sim-name", "w1"])
    bare = sim_factory("bare", args=["--sim-name", "bare", "--sim-no-distributed"])
    config = FleetConfig(
        master=MasterConfig(port=master.port),
        workers=(
            WorkerConfig("w1", WorkerKind.REMOTE, port=w1.port),
            WorkerConfig("bare", WorkerKind.REMOTE, port=bare.port),
        ),
    )
    gpu_reader = GpuReader(FakeNvml.recorded("gpu-h200", "t2_after_jobs"))
    app = desktop_with(qapp, tmp_path, config, gpu_reader=gpu_reader)
    await app.start()
    try:
        app.open_jobs()
        window = app.jobs_window
        assert window is not None and window.isVisible()
        bad = tmp_path / "ui.json"
        bad.write_text(json.dumps({"nodes": [], "links": []}))
        assert window.open_workflow(bad)  # UI format: converted with the master's nodes
        await until(lambda: "nothing to run" in window.message.text())
        assert not window.buttons["Run"].isEnabled() and window.workflow is None
        assert window.open_workflow(RECORDINGS / "ui_workflows" / "c12_subgraph_basic" / "ui.json")
        await until(lambda: window.buttons["Run"].isEnabled())
        assert "UI-format workflow, converted, 4 nodes" in window.file_label.text()
        assert window.workflow is not None and set(window.workflow) == {"1", "4", "5:2", "5:3"}

        path = tmp_path / "distributed.json"
        path.write_text(json.dumps(workflow("workflow_distributed_nomodel")))
        assert window.open_workflow(path) and window.buttons["Run"].isEnabled()
        asked: list[list[PreflightResult]] = []

        async def drop(checks: list[PreflightResult]) -> bool:
            asked.append(checks)
            return True

        window.ask_drop_failing = drop
        window.buttons["Run"].click()
        await until(lambda: len(window.history) == 1, timeout=60)
        (checks,) = asked
        assert {c.participant: c.ok for c in checks} == {"master": True, "w1": True, "bare": False}
        assert (
            "DistributedCollector" in next(c for c in checks if c.participant == "bare").summary()
        )
        record = window.history[0]
        assert record.error == "" and record.result is not None
        assert texts(window, 1) == {"master": "✔ done", "w1": "✔ done"}
        await until(lambda: gallery_labels(window) == ["master · seed 1234", "w1 · seed 1235"])
        await until(lambda: all(not window.gallery.item(i).icon().isNull() for i in range(2)))
        assert window.runs.count() == 1 and "2 images" in window.runs.item(0).text()

        await window.save_all(tmp_path / "saved")
        assert sorted(p.name.split("_")[0] for p in (tmp_path / "saved").iterdir()) == [
            "master",
            "w1",
        ]
        assert window.buttons["Open folder"].isEnabled()

        distributed = http_json(f"{master.url}/distributed/config")
        assert sorted(w["name"] for w in distributed["workers"]) == ["bare", "w1"]

        window.buttons["Test fleet"].click()
        await until(lambda: window.message.text().startswith("Test fleet: 2 of 3"), timeout=60)
        states = texts(window, 1)
        assert states["master"].startswith("✔ delivered") and states["w1"].startswith("✔ delivered")
        assert "lacks the ComfyUI-Distributed extension" in states["bare"]
    finally:
        await app.stop()


async def test_closing_or_quitting_during_a_run_asks_then_interrupts_everywhere(
    qapp: QApplication, sim_factory: Callable[..., SimInstance], tmp_path: Path
) -> None:
    from PySide6.QtWidgets import QMessageBox

    from tests.integration.test_cli_jobs import _slow_distributed
    from tests.ui.helpers import answer

    scale = ["--sim-time-scale", "0.4"]
    master = sim_factory("master", args=["--sim-name", "master", *scale])
    w1 = sim_factory("w1", args=["--sim-name", "w1", *scale])
    config = FleetConfig(
        master=MasterConfig(port=master.port),
        workers=(WorkerConfig("w1", WorkerKind.REMOTE, port=w1.port),),
    )
    app = desktop_with(
        qapp, tmp_path, config, gpu_reader=GpuReader(FakeNvml.recorded("cpu", "t0_idle"))
    )
    await app.start()
    try:
        app.open_jobs()
        window = app.jobs_window
        assert window is not None
        path = tmp_path / "slow.json"
        path.write_text(json.dumps(_slow_distributed()))
        assert window.open_workflow(path)
        window.buttons["Run"].click()

        def busy() -> bool:
            return all(http_json(f"{sim.url}/queue")["queue_running"] for sim in (master, w1))

        await until(busy, timeout=60)
        window.close()
        assert "Interrupt it on every participant?" in await answer(QMessageBox.StandardButton.No)
        assert window.isVisible() and window.run is not None  # kept, still running
        app.quit()
        await answer(QMessageBox.StandardButton.Yes)
        await until(lambda: app.quit_requested.is_set(), timeout=30)
        for sim in (master, w1):
            assert http_json(f"{sim.url}/queue") == {"queue_running": [], "queue_pending": []}
        assert "master: interrupted 1 running" in window.message.text()
        assert "w1: interrupted 1 running" in window.message.text()
    finally:
        await app.stop()


async def test_the_jobs_window_says_what_happens(
    qapp: QApplication, sim_factory: Callable[..., SimInstance], tmp_path: Path
) -> None:
    from app.sim.fleet import free_port
    from app.ui.gallery import ImageViewer

    master = sim_factory("master", args=["--sim-name", "master"])
    w1 = sim_factory("w1", args=["--sim-name", "w1"])
    config = FleetConfig(
        master=MasterConfig(port=master.port),
        workers=(
            WorkerConfig("w1", WorkerKind.REMOTE, port=w1.port),
            WorkerConfig("gone", WorkerKind.REMOTE, port=free_port()),
        ),
    )
    app = desktop_with(
        qapp, tmp_path, config, gpu_reader=GpuReader(FakeNvml.recorded("cpu", "t0_idle"))
    )
    await app.start()
    try:
        await until(
            lambda: (
                app.monitor.health("gone") is not None
                and app.monitor.health("gone").state.value == "offline"
            )
        )  # type: ignore[union-attr]
        app.open_jobs()
        window = app.jobs_window
        assert window is not None
        assert window.chosen_workers() == ["w1"]  # the offline one is left unticked
        assert "gone — offline" in window.workers.item(1).text()
        assert not window.buttons["Save all…"].isEnabled()  # no images yet
        plain = tmp_path / "plain.json"
        plain.write_text(json.dumps(workflow("workflow_nomodel")))
        assert window.open_workflow(plain)
        assert "runs it on the master alone" in window.message.text()
        window.buttons["Run"].click()
        await until(lambda: len(window.history) == 1, timeout=60)
        assert list(texts(window, 1)) == ["master"]  # no worker marked 'skipped'
        assert window.message.text().startswith("Done: 1 image(s) from master")
        assert window.buttons["Save all…"].isEnabled()
        await until(lambda: window.gallery.count() == 1 and window.gallery.images[0] is not None)
        window.gallery.itemDoubleClicked.emit(window.gallery.item(0))
        viewer = next(w for w in qapp.topLevelWidgets() if isinstance(w, ImageViewer))
        assert viewer.isVisible()
        viewer.close()
        broken = tmp_path / "broken.json"
        broken.write_text("{")
        assert not window.open_workflow(broken)
        assert window.workflow is None and not window.buttons["Run"].isEnabled()
        assert window.file_label.text().startswith("No workflow open")
        assert window.open_workflow(plain)
        window.buttons["Run"].click()
        await until(lambda: window.gallery.count() == 0)  # cleared for the new run
        await until(lambda: len(window.history) == 2, timeout=60)
    finally:
        await app.stop()
