"""The composition root: builds the services once and hands each widget what it needs."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import gc
import itertools
import logging
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import qasync
from PySide6.QtCore import QSettings, Qt, QTimer
from PySide6.QtWidgets import QApplication, QDockWidget, QSystemTrayIcon

from app import APP_ID, APP_NAME
from app.core.cloud import money
from app.core.config import AppSettings, FleetConfig, Notice
from app.core.errors import ComfyFleetError, ConfigFileError
from app.core.health import ProbeSchedule
from app.core.queue import OUT, ItemState, JobSpec, QueueError
from app.core.queue_url import QueueUrlError
from app.services.autostart import Autostart
from app.services.comfy_client import ComfyClient, check_connection
from app.services.dispatcher import Dispatcher
from app.services.distributed_sync import stable_id
from app.services.gpus import GpuMonitor, GpuReader
from app.services.job_service import JOBS_HTTP_TIMEOUT, JobService
from app.services.launch_plan import make_supervisor, plan_launches
from app.services.monitor import targets_from_config
from app.services.monitor_thread import MonitorThread
from app.services.paths import AppPaths
from app.services.queue_db import QueueStoreError
from app.services.queue_service import (
    FleetQueue,
    QueuePaths,
    fleet_session,
    open_fleet_queue,
    queue_has_work,
    queue_wait,
    run_while_held,
    take_turns,
)
from app.services.storage import ConfigStore, LoadResult
from app.services.tasks import OwnedTasks
from app.services.workflow_source import prompt_of
from app.ui.ask import Button, DialogAsker, answer_of, ask, tell
from app.ui.bridge import FleetBridge
from app.ui.cloud_control import CloudControl
from app.ui.config_keeper import ConfigKeeper
from app.ui.dock_scroll import DockScroll
from app.ui.fleet_control import FleetControl
from app.ui.icons import app_icon
from app.ui.jobs_window import JobsWindow
from app.ui.log_viewer import LogSources
from app.ui.main_window import MainWindow
from app.ui.queue_panel import QueuePanel
from app.ui.settings_dialog import SettingsDialog
from app.ui.single_instance import InstanceServer, activate_running, instance_key
from app.ui.system_libs import explain_missing
from app.ui.theme import Theme
from app.ui.tray import FleetTray
from app.ui.tunnel_control import TunnelControl

log = logging.getLogger(__name__)
REREAD_S = 10.0  # the queue read again at least this often (images per minute move on)


class DesktopApp:
    """Builds the services once and hands each widget what it needs (the composition root)."""

    def __init__(
        self,
        qt_app: QApplication,
        paths: AppPaths,
        loaded: LoadResult,
        simulation: bool = False,
        gpu_reader: GpuReader | None = None,
        autostart: Autostart | None = None,
        queue_url: str | None = None,
    ) -> None:
        """`queue_url`: `--queue-url` (None: the environment's or the settings' choice)."""
        self.qt_app = qt_app
        self.paths = paths
        config = loaded.config
        self.theme = Theme(qt_app, config.app.theme)
        self.client = ComfyClient()
        settings = config.app
        self.monitor = MonitorThread(
            ProbeSchedule(
                settings.poll_interval_s,
                settings.busy_poll_interval_s,
                settings.offline_backoff_max_s,
            ),
        )
        self.gpus = GpuMonitor(gpu_reader or GpuReader(), on_failure=self.show_failure)
        self.supervisor = make_supervisor(config, paths, self.client)
        self.keeper = ConfigKeeper(ConfigStore(paths.config_file), config)
        self.asker = DialogAsker()
        self.control = FleetControl(self.supervisor, paths, self.gpus, self.keeper, self.asker)
        self.tunnels = TunnelControl(paths, self.keeper, self.asker)
        self._jobs_session: aiohttp.ClientSession | None = None
        self.logs = LogSources(self.supervisor, self.keeper, self.jobs_session)
        self.bridge = FleetBridge(self.monitor, self.gpus, self.supervisor)
        self.queue, queue_problem = open_queue(paths, config, queue_url)
        self.window = MainWindow(
            self.keeper,
            QSettings(str(paths.window_state), QSettings.Format.IniFormat),
            self.monitor,
            lambda url: check_connection(self.client, url),
            self.control,
            self.tunnels,
            self.logs,
            simulation=simulation,
            startup_problem=" ".join(filter(None, (loaded.problem, queue_problem))),
        )
        self.asker.fallback = self.window
        self.window.setWindowIcon(app_icon())
        self._wire()
        self.tray: FleetTray | None = None
        if QSystemTrayIcon.isSystemTrayAvailable():
            self.tray = FleetTray(
                self.window,
                self.quit,
                self.control,
                self.tunnels,
                lambda: self.keeper.config.master.url,
            )
            self.bridge.healthChanged.connect(lambda _: self._show_tray_health())
            self.tray.show()
        # Without a tray, closing the window must quit: never leave an invisible app behind.
        # Quitting goes through quit() so that the services stop before the loop does.
        qt_app.setQuitOnLastWindowClosed(False)
        self._follow_settings(config)
        self.autostart = autostart or Autostart()
        self.quit_requested = asyncio.Event()
        self.instance = InstanceServer(instance_key(paths.config_file), self.window.bring_to_front)
        self.jobs_window: JobsWindow | None = None
        self._tasks = OwnedTasks(self.show_failure)
        self.queue_panel = QueuePanel(
            self.queue.store,
            self._tasks.spawn,
            lambda file: prompt_of(file, self.jobs_session(), self._config.master.url),
        )
        self.dispatcher: Dispatcher | None = None
        self._dispatching = asyncio.Event()  # set: the dispatcher stops
        self._dispatch_task: asyncio.Task[None] | None = None
        self._wire_queue()
        self.cloud = CloudControl(
            self.keeper,
            self.jobs_session,
            self._tasks.spawn,
            self._cloud_said,
            self._has_work,
            on_cost=self._show_cloud_cost,
            queue_wait=self._queue_wait,
        )
        self._cloud_stop = asyncio.Event()
        self._wire_cloud()

    def _wire(self) -> None:
        window, bridge = self.window, self.bridge
        bridge.healthChanged.connect(window.show_health)
        bridge.gpusChanged.connect(window.show_gpus)
        bridge.instanceChanged.connect(window.show_instance)
        bridge.lineAdded.connect(self.logs.add_local_line)
        self.tunnels.on_status(bridge.tunnelChanged.emit)
        bridge.tunnelChanged.connect(window.show_tunnel)
        window.quitRequested.connect(self.quit)
        window.jobsRequested.connect(self.open_jobs)
        window.settingsRequested.connect(self.open_settings)
        window.noticeRaised.connect(self.notify)
        self.keeper.changed.connect(self._config_saved)
        self.supervisor.on_failure(self.show_failure)

    @property
    def _config(self) -> FleetConfig:
        return self.keeper.config

    def _follow_settings(self, config: FleetConfig) -> None:
        tray = self.tray is not None and self.tray.isVisible()
        self.window.set_close_to_tray(tray and config.app.minimize_to_tray)
        if config.app.theme != self.theme.choice:
            self.theme.apply(config.app.theme)

    def show_failure(self, what: str, error: BaseException) -> None:
        """A background task failed: said in the window, not only in the log."""
        self.window.statusBar().showMessage(f"{what} failed: {error}", 30000)

    def notify(self, notice: Notice | None, title: str, text: str) -> None:
        """A desktop notification, if the user wants this kind (None: always); else the
        status bar."""
        if notice is not None and not self._config.app.notifies(notice):
            return
        if self.tray is not None and self.tray.isVisible():
            self.tray.showMessage(title, text)
        else:
            self.window.statusBar().showMessage(f"{title}: {text}", 15000)

    def open_settings(self) -> None:
        self._tasks.spawn(self._settings_dialog(), "changing the settings")

    async def _settings_dialog(self) -> None:
        dialog = SettingsDialog(
            self._config.app,
            self.autostart.location,
            self.tray is not None,
            self.window,
            cloud=self._config.cloud,
            on_key=self.cloud.panel.ask_key,
        )
        try:
            if await answer_of(dialog) and self.apply_settings(dialog.result_settings()):
                self.keeper.apply(dataclasses.replace(self._config, cloud=dialog.result_cloud()))
        finally:
            dialog.deleteLater()

    def apply_settings(self, settings: AppSettings) -> bool:
        """Save the settings; start-at-login is written (or removed) where this desktop reads it."""
        try:
            self.autostart.set(settings.start_at_login)
        except OSError as exc:
            self.window.statusBar().showMessage(f"Start at login not changed: {exc}", 15000)
            settings = dataclasses.replace(settings, start_at_login=self.autostart.enabled())
        return self.keeper.apply(dataclasses.replace(self._config, app=settings))

    def jobs_session(self) -> aiohttp.ClientSession:
        """The jobs' own HTTP session: long reads and websockets, unlike the monitor's probes."""
        if self._jobs_session is None or self._jobs_session.closed:
            self._jobs_session = fleet_session(JOBS_HTTP_TIMEOUT)
        return self._jobs_session

    def open_jobs(self, test_fleet: bool = False) -> None:
        if self.jobs_window is None:
            self.jobs_window = JobsWindow(
                self.jobs_session,
                self._config,
                self.monitor.health,
                instance_state=self._instance_state,
            )
            self.jobs_window.noticeRaised.connect(self.notify)
            self.jobs_window.setWindowIcon(app_icon())
        self.jobs_window.show()
        self.jobs_window.raise_()
        if test_fleet and self.jobs_window.run is None:
            self.jobs_window.buttons["Test fleet"].click()

    def _instance_state(self, name: str) -> str | None:
        status = self.supervisor.status(name)
        return status.state.value if status else None

    def _config_saved(self, previous: FleetConfig, config: FleetConfig) -> None:
        """Keep the master's ComfyUI-Distributed in step with the workers configured here."""
        self._follow_settings(config)
        if self.jobs_window is not None:
            self.jobs_window.set_config(config)
        if self.dispatcher is not None:  # the queue follows the fleet
            master, workers = JobService(self.jobs_session(), config).participants()
            self.dispatcher.set_participants([master, *workers])
        kept = {stable_id(w) for w in config.workers}
        removed = [stable_id(w) for w in previous.workers if stable_id(w) not in kept]
        self._tasks.spawn(self._sync(config, removed), "syncing ComfyUI-Distributed")

    async def _sync(self, config: FleetConfig, removed: list[str]) -> None:
        try:
            report = await JobService(self.jobs_session(), config).sync(removed)
        except (ComfyFleetError, aiohttp.ClientError, OSError) as exc:
            log.info("ComfyUI-Distributed not synced: %s", exc)
            return
        changed = report.created + report.updated + report.deleted
        if changed:
            self.window.statusBar().showMessage(
                f"ComfyUI-Distributed on the master updated: {', '.join(changed)}", 8000
            )

    def _show_tray_health(self) -> None:
        if self.tray is not None:
            self.tray.show_health(self.monitor.snapshot())

    def _wire_queue(self) -> None:
        panel = self.queue_panel
        dock = QDockWidget("Queue", self.window)
        dock.setObjectName("queueDock")
        dock.setWidget(DockScroll(panel))
        self.window.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
        self.window.tabifyDockWidget(self.window.gpu_dock, dock)
        self.window.gpu_dock.raise_()
        self.queue_dock = dock
        self.window.add_panel(dock, "Queue", "Ctrl+Shift+Q")
        panel.addRequested.connect(self.add_job)
        panel.cancelRequested.connect(self.cancel_job)
        panel.changed.connect(self._queue_changed_here)
        self._queue_seen = (self.queue.store.data_version(), time.monotonic())
        self._queue_timer = QTimer(self.window)
        self._queue_timer.setInterval(1000)  # another process's changes, and the ETAs
        self._queue_timer.timeout.connect(self._queue_tick)
        self._queue_timer.start()

    def _wire_cloud(self) -> None:
        dock = QDockWidget("Cloud", self.window)
        dock.setObjectName("cloudDock")
        dock.setWidget(DockScroll(self.cloud.panel))
        self.window.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
        self.window.tabifyDockWidget(self.window.gpu_dock, dock)
        self.window.gpu_dock.raise_()
        self.cloud_dock = dock
        self.window.add_panel(dock, "Cloud", "Ctrl+Shift+C")

    def _queue_wait(self) -> tuple[int, float | None]:
        return queue_wait(self.queue_panel.jobs.jobs, time.time())  # (as the panel last read)

    def _show_cloud_cost(self, text: str) -> None:
        if self.tray is not None:
            self.tray.show_cloud(text)

    def _cloud_said(self, text: str) -> None:
        self.window.statusBar().showMessage(f"Cloud: {text}", 30000)
        if self.tray is not None:
            self.tray.showMessage(APP_NAME, f"Cloud: {text}")

    def _has_work(self, worker: str) -> bool:
        """The queue has items out on it or waiting, or its own ComfyUI queue is not empty."""
        health = self.monitor.health(worker)
        if health is not None and health.queue_remaining:
            return True
        return queue_has_work(self.queue.store, self.dispatcher, worker)

    def add_job(self, spec: JobSpec) -> None:
        try:
            added = self.queue.add(spec)
        except QueueError as exc:
            tell(self.window, f"The job was not queued: {exc}")
            return
        self._queue_changed_here()
        self.window.statusBar().showMessage(
            f"Job {added.job}: {added.items} item(s) queued"
            + ("" if added.dispatcher else " (no dispatcher runs: see the Queue panel)"),
            10000,
        )

    def cancel_job(self, job: int) -> None:
        if self.dispatcher is not None:
            self.dispatcher.cancel(job)
        else:
            self.queue.store.cancel(job)
        self._show_queue()

    def _queue_changed_by_dispatcher(self) -> None:
        self._queue_seen = (-1, self._queue_seen[1])  # read at the next tick (not per change)

    def _queue_changed_here(self) -> None:
        if self.dispatcher is not None:
            self.dispatcher.store_changed()
        self._show_queue()

    def _queue_tick(self) -> None:
        """The queue read again when another process changed it (on a server: told by
        NOTIFY) or this one's dispatcher did, and now and then for the rates; else only the
        ETAs move on."""
        version, read = self._queue_seen
        if version != self.queue.store.data_version() or time.monotonic() - read > REREAD_S:
            self._show_queue()
        else:
            self.queue_panel.jobs.show(self.queue_panel.jobs.jobs)

    def _show_queue(self) -> None:
        self._queue_seen = (self.queue.store.data_version(), time.monotonic())
        self.queue_panel.refresh()
        if self.tray is not None:
            waiting = sum(
                j.count(ItemState.QUEUED, *OUT) for j in self.queue_panel.jobs.jobs if not j.ended
            )
            self.tray.show_queued(waiting)

    async def _dispatch(self) -> None:
        """The window dispatches the queue once no other process (on any machine) does: it
        says who does meanwhile, and takes over when that one stops or dies."""
        stop = self._dispatching

        async def turn(dispatcher: Dispatcher) -> None:
            self.dispatcher = dispatcher
            dispatcher.subscribe(self._queue_changed_by_dispatcher)
            self._show_dispatcher("Dispatched by this window.")
            try:
                await run_while_held(self.queue, dispatcher, stop)
            finally:
                self.dispatcher = None

        await take_turns(
            self.queue, self.jobs_session(), self._config, "the window", stop,
            lambda text: self._show_dispatcher(
                f"{text.capitalize()}. This window takes over when it stops."
            ),
            turn, lambda exc: log.warning("%s", exc), self.show_failure,
        )  # fmt: skip

    def _show_dispatcher(self, text: str) -> None:
        where = self.queue.store.where
        shared = f"Team queue on {where}. " if self.queue.url else ""
        self.queue_panel.show_dispatcher(shared + text)

    async def start(self) -> None:
        """Begin watching, and adopt the instances a previous run left alive."""
        self._dispatch_task = self._tasks.spawn(self._dispatch(), "dispatching the queue")
        self._tasks.spawn(self.cloud.run(self._cloud_stop), "watching the cloud pods")
        self.monitor.set_targets(targets_from_config(self._config))
        self.monitor.start()
        self.gpus.start()
        try:
            plan = plan_launches(self._config, self.paths.data_dir)
        except ComfyFleetError:
            return  # nothing launchable yet: the window says what to do
        adopted = self.supervisor.adopt(plan.specs)
        if adopted:
            log.info("adopted running instances: %s", ", ".join(adopted))
        if self._config.app.start_fleet_on_launch:
            for name in plan.specs:
                if name not in adopted:
                    self.control.start(name)

    async def stop(self) -> None:
        self._cloud_stop.set()
        self._queue_timer.stop()
        self._dispatching.set()  # what is out stays out: the next dispatcher follows it
        if self._dispatch_task is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._dispatch_task, 10)
        self.queue.close()
        await self.tunnels.shutdown()  # restores the master's host
        await self.control.shutdown()  # Quit stops what the app started
        await self.logs.close()
        await self.monitor.stop()
        await self.gpus.stop()
        await self.client.close()
        if self._jobs_session is not None:
            await self._jobs_session.close()

    def quit(self) -> None:
        """Leave, asking first if a run is in progress (it is interrupted everywhere) or pods
        still bill."""
        running = self.jobs_window is not None and self.jobs_window.run is not None
        if not running and not self.cloud.billing():
            self.quit_now()
            return
        self._tasks.spawn(self._quit_after_asking(), "quitting")

    async def _quit_after_asking(self) -> None:
        if self.jobs_window is not None and not await self.jobs_window.stop_run_if_asked():
            return
        pods = self.cloud.billing()
        if pods:
            cost = money(sum(p.cost_per_h for p in pods))
            answer = await ask(
                self.window,
                f"{len(pods)} pod(s) still running ({cost}/h): "
                + ", ".join(p.name for p in pods)
                + ".",
                Button.Yes | Button.No | Button.Cancel,
                Button.Cancel,
                labels={Button.Yes: "Stop them", Button.No: "Keep them", Button.Cancel: "Cancel"},
            )
            if answer == Button.Cancel:
                return
            if answer == Button.Yes:
                try:
                    await self.cloud.stop_all(pods)
                except ComfyFleetError as exc:
                    self._cloud_said(f"not every pod stopped: {exc}")
                    return
        self.quit_now()

    def quit_on_signal(self) -> None:
        """SIGTERM/Ctrl-C: nobody to ask; a run in progress is interrupted, then the app ends."""
        run = self.jobs_window.run if self.jobs_window is not None else None
        if run is None:
            self.quit_now()
            return
        self._tasks.spawn(self._interrupt_then_quit(), "interrupting the run before quitting")

    async def _interrupt_then_quit(self) -> None:
        try:
            assert self.jobs_window is not None
            await asyncio.wait_for(self.jobs_window.interrupt(), 8)
        except (TimeoutError, ComfyFleetError, aiohttp.ClientError, OSError) as exc:
            log.warning("the run was not interrupted everywhere before quitting: %s", exc)
        self.quit_now()

    def quit_now(self) -> None:
        """Leave: _run stops the services, then the event loop ends."""
        self.window.save_geometry()
        if self.tray is not None:
            self.tray.hide()
        self.instance.close()
        self.window.hide()
        self.quit_requested.set()


def create_qt_app(argv: list[str]) -> QApplication:
    existing = QApplication.instance()
    if isinstance(existing, QApplication):
        return existing
    qt_app = QApplication(argv)
    qt_app.setApplicationName(APP_NAME)
    qt_app.setDesktopFileName(APP_ID)
    qt_app.setWindowIcon(app_icon())
    return qt_app


def install_signal_handlers(qt_app: QApplication, quit_app: Callable[[], None]) -> None:
    """SIGTERM and Ctrl-C quit cleanly (stopping what the app started), not kill the app.

    Python runs signal handlers only between bytecodes; the timer lets it do so while Qt waits.
    """
    for name in ("SIGINT", "SIGTERM"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), lambda *_: quit_app())
    timer = QTimer(qt_app)
    timer.timeout.connect(lambda: None)
    timer.start(250)


def collect_garbage_on_gui_thread(qt_app: QApplication) -> None:
    """Python's cycle collector runs in whichever thread happens to allocate, and a Qt object
    freed from a supervisor's watcher thread crashes Qt. So it runs here, on the GUI thread:
    the young generation every second, everything once a minute."""
    gc.disable()
    ticks = itertools.count(1)
    timer = QTimer(qt_app)
    timer.timeout.connect(lambda: gc.collect(2 if next(ticks) % 60 == 0 else 0))
    timer.start(1000)


async def _run(desktop: DesktopApp) -> None:
    desktop.qt_app.aboutToQuit.connect(desktop.quit_requested.set)
    desktop.window.show()
    await desktop.start()
    try:
        await desktop.quit_requested.wait()
    finally:
        await desktop.stop()


def load_or_explain(store: ConfigStore) -> LoadResult:
    """The config; one that cannot be read at all (a folder, no permission) is said in the
    window, which then starts on defaults (and says so again if a save fails)."""
    try:
        return store.load()
    except ConfigFileError as exc:
        log.warning("%s", exc)
        return LoadResult(FleetConfig(), f"{exc}. ComfyFleet started with default settings.")


def open_queue(
    paths: AppPaths, config: FleetConfig, queue_url: str | None
) -> tuple[FleetQueue, str | None]:
    """The fleet queue; where its database cannot be used (damaged, a newer version's, a
    server that does not answer…) the window still opens, says so, and queues into a folder of
    this session's (the file or server is left as it is)."""
    try:
        return open_fleet_queue(paths, config, queue_url), None
    except (QueueStoreError, QueueUrlError) as exc:
        log.warning("%s", exc)
        folder = Path(tempfile.mkdtemp(prefix="comfyfleet-queue-"))
        said = f"Fleet queue: {exc}. Jobs queued now last for this session only (in {folder})."
        return FleetQueue(QueuePaths.under(folder)), said


def run_app(paths: AppPaths, demo_workers: int | None = None, queue_url: str | None = None) -> int:
    problem = explain_missing()  # before Qt would abort with its own generic words
    if problem is not None:
        print(problem, file=sys.stderr)
        return 1
    qt_app = create_qt_app(sys.argv)
    simulation = demo_workers is not None
    if simulation:
        from app.demo import start_demo_fleet

        theme = load_or_explain(ConfigStore(paths.config_file)).config.app.theme  # the user's
        paths, demo_fleet = start_demo_fleet(demo_workers or 0, theme)
    elif activate_running(instance_key(paths.config_file)):
        print(f"{APP_NAME} is already running; its window was brought to the front.")
        return 0
    try:
        loaded = load_or_explain(ConfigStore(paths.config_file))
        reader = GpuReader(demo_fleet.nvml) if simulation else None  # its simulated GPUs
        desktop = DesktopApp(
            qt_app, paths, loaded, simulation, reader, queue_url="" if simulation else queue_url
        )  # (the demo keeps its own queue)
        if simulation:
            desktop.cloud.secrets = demo_fleet.secrets()  # the simulated Runpod's key
        install_signal_handlers(qt_app, desktop.quit_on_signal)
        collect_garbage_on_gui_thread(qt_app)
        log.info("%s started with config %s", APP_NAME, paths.config_file)
        with asyncio.Runner(loop_factory=functools.partial(qasync.QEventLoop, qt_app)) as runner:
            runner.run(_run(desktop))
    finally:
        if simulation:
            demo_fleet.stop()
    return 0
