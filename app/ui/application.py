"""The composition root: builds the services once and hands each widget what it needs."""

from __future__ import annotations

import asyncio
import functools
import logging
import signal
import sys
from contextlib import AsyncExitStack

import qasync
from PySide6.QtCore import QSettings, QTimer
from PySide6.QtWidgets import QApplication, QSystemTrayIcon

from app import APP_ID, APP_NAME
from app.services.paths import AppPaths
from app.services.storage import ConfigStore, LoadResult
from app.ui.icons import app_icon
from app.ui.main_window import MainWindow
from app.ui.single_instance import InstanceServer, activate_running, instance_key
from app.ui.tray import FleetTray

log = logging.getLogger(__name__)


class DesktopApp:
    """Owns the window, the tray and the single-instance server for one run of the app."""

    def __init__(
        self, qt_app: QApplication, paths: AppPaths, loaded: LoadResult, simulation: bool = False
    ) -> None:
        self.qt_app = qt_app
        self.paths = paths
        settings = QSettings(str(paths.window_state), QSettings.Format.IniFormat)
        self.window = MainWindow(
            ConfigStore(paths.config_file),
            loaded.config,
            settings,
            simulation=simulation,
            startup_problem=loaded.problem,
        )
        self.window.setWindowIcon(app_icon())
        self.tray: FleetTray | None = None
        if QSystemTrayIcon.isSystemTrayAvailable():
            self.tray = FleetTray(app_icon(), self.window, self.quit)
            self.tray.show()
        # Without a tray, closing the window must quit: never leave an invisible app behind.
        qt_app.setQuitOnLastWindowClosed(self.tray is None)
        self.window.close_hides = lambda: self.tray is not None and self.tray.isVisible()
        self.instance = InstanceServer(instance_key(paths.config_file), self.window.bring_to_front)

    def quit(self) -> None:
        self.window.save_geometry()
        if self.tray is not None:
            self.tray.hide()
        self.instance.close()
        self.qt_app.quit()


def create_qt_app(argv: list[str]) -> QApplication:
    existing = QApplication.instance()
    if isinstance(existing, QApplication):
        return existing
    qt_app = QApplication(argv)
    qt_app.setApplicationName(APP_NAME)
    qt_app.setDesktopFileName(APP_ID)
    qt_app.setWindowIcon(app_icon())
    return qt_app


def install_signal_handlers(qt_app: QApplication) -> None:
    """SIGTERM and Ctrl-C quit cleanly (stopping what the app started), not kill the app.

    Python runs signal handlers only between bytecodes; the timer lets it do so while Qt waits.
    """
    for name in ("SIGINT", "SIGTERM"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), lambda *_: qt_app.quit())
    timer = QTimer(qt_app)
    timer.timeout.connect(lambda: None)
    timer.start(250)


async def _run(desktop: DesktopApp, stack: AsyncExitStack) -> None:
    quit_event = asyncio.Event()
    desktop.qt_app.aboutToQuit.connect(quit_event.set)
    desktop.window.show()
    async with stack:
        await quit_event.wait()


def run_app(paths: AppPaths, demo_workers: int | None = None) -> int:
    qt_app = create_qt_app(sys.argv)
    stack = AsyncExitStack()
    simulation = demo_workers is not None
    if simulation:
        from app.sim.demo import start_demo_fleet

        paths, demo_fleet = start_demo_fleet(demo_workers or 0)
    elif activate_running(instance_key(paths.config_file)):
        print(f"{APP_NAME} is already running; its window was brought to the front.")
        return 0
    install_signal_handlers(qt_app)
    try:
        loaded = ConfigStore(paths.config_file).load()
        desktop = DesktopApp(qt_app, paths, loaded, simulation)
        log.info("%s started with config %s", APP_NAME, paths.config_file)
        with asyncio.Runner(loop_factory=functools.partial(qasync.QEventLoop, qt_app)) as runner:
            runner.run(_run(desktop, stack))
    finally:
        if simulation:
            demo_fleet.stop()
    return 0
