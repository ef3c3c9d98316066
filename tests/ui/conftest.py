from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from app.core.config import FleetConfig, MasterConfig, WorkerConfig, WorkerKind
from app.services.paths import AppPaths, resolve_paths
from app.services.storage import ConfigStore
from app.ui.application import DesktopApp


@pytest.fixture
def fleet_config() -> FleetConfig:
    return FleetConfig(
        master=MasterConfig(comfyui_dir="/opt/ComfyUI", gpu="0"),
        workers=(
            WorkerConfig("gpu1", WorkerKind.LOCAL, port=8189, gpu="1"),
            WorkerConfig("lan-box", WorkerKind.REMOTE, host="127.0.0.20", port=8188),
            WorkerConfig(
                "runpod",
                WorkerKind.CLOUD,
                host="pod-a.invalid",
                port=443,
                enabled=False,
            ),
        ),
    )


@pytest.fixture
def app_paths(tmp_path: Path) -> AppPaths:
    return resolve_paths(tmp_path / "fleet.json")


@pytest.fixture
def saved_paths(app_paths: AppPaths, fleet_config: FleetConfig) -> AppPaths:
    ConfigStore(app_paths.config_file).save(fleet_config)
    return app_paths


@pytest.fixture
def desktop(qapp: QApplication, saved_paths: AppPaths, qtbot: QtBot) -> Iterator[DesktopApp]:
    app = DesktopApp(qapp, saved_paths, ConfigStore(saved_paths.config_file).load())
    app.window.show()
    qtbot.waitExposed(app.window)
    yield app
    app.instance.close()
    app.window.set_close_to_tray(False)
    app.window.close()


@pytest.fixture(autouse=True)
def collect_qt_garbage_here() -> Iterator[None]:
    """Free a test's Qt objects on this (the GUI) thread: left to the cycle collector they may
    be freed from a watcher thread of the next test, which crashes Qt (as the app avoids too)."""
    yield
    gc.collect()


def pytest_asyncio_loop_factories(config: object, item: object) -> dict[str, object]:
    """Async UI tests run on qasync's loop, as the app does (REFERENCE §6)."""
    import qasync
    from PySide6.QtWidgets import QApplication

    def factory() -> object:
        app = QApplication.instance() or QApplication([])
        return qasync.QEventLoop(app)

    return {"qasync": factory}
