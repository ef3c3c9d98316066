"""The main window: the fleet table (name, state and why first), the selected instance's
details, the GPU panel, and a status bar that sums the fleet up."""

from __future__ import annotations

import asyncio
import dataclasses
import time

from PySide6.QtCore import QByteArray, QEvent, QPoint, QSettings, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QCloseEvent, QGuiApplication
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDockWidget,
    QFrame,
    QHeaderView,
    QLabel,
    QMainWindow,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from app import APP_NAME, __version__
from app.core.config import MASTER, FleetConfig, Notice
from app.core.health import WorkerHealth, WorkerState
from app.core.outages import Outages
from app.core.tunnel import TunnelState
from app.services.comfy_install import find_install_choices
from app.services.gpus import GpuReading, GpuSnapshot
from app.services.monitor import targets_from_config
from app.services.monitor_thread import MonitorThread
from app.services.processes import port_free
from app.services.supervisor import InstanceState, InstanceStatus
from app.services.tasks import OwnedTasks
from app.services.tunnel import TunnelStatus
from app.ui.ask import Button, answer_of, ask, tell
from app.ui.browser import open_in_browser
from app.ui.config_keeper import ConfigKeeper
from app.ui.delegates import ActivityDelegate, StatusLightDelegate, VramBarDelegate
from app.ui.details_pane import DetailsPane
from app.ui.dock_scroll import DockScroll
from app.ui.fleet_control import FleetControl
from app.ui.fleet_toolbar import FleetToolbar
from app.ui.gpu_panel import GpuPanel
from app.ui.history import FleetHistory
from app.ui.log_viewer import LogSources, LogViewer
from app.ui.menus import MenuBar
from app.ui.row_text import CRASHED_STATES, UP, Column, FleetRow, rows_from_config, standing
from app.ui.setup_dialog import MasterDialog, SetupDialog
from app.ui.summary import fleet_summary
from app.ui.tunnel_control import TunnelControl
from app.ui.tunnel_menu import TunnelMenu
from app.ui.worker_dialog import Checker, WorkerDialog
from app.ui.worker_table import FleetTableModel, FleetTableView

GETTING_STARTED = """
<h3>Welcome to ComfyFleet</h3>
<p>No ComfyUI is set up yet. ComfyFleet runs your ComfyUI master and one worker per GPU,
and watches remote and cloud workers.</p>
<ol>
<li><b>Set up the fleet…</b> finds ComfyUI on this machine (a git or portable install,
ComfyUI Desktop) and its GPUs, and proposes the master plus one worker per GPU to edit and apply.
<b>Master…</b> changes where the master runs at any time.</li>
<li><b>Add worker…</b> for each GPU, LAN box or cloud pod (a Runpod pod id is enough), or import
ComfyUI-Distributed's settings: <code>comfy-fleet config import-distributed gpu_config.json</code>.
</li>
<li>Just looking? Run <code>comfy-fleet demo</code> to see a simulated fleet.</li>
</ol>
"""
SIMULATION = (
    "<b>Simulation.</b> This is a demo fleet of simulated ComfyUI instances on this machine's "
    "loopback ports; no GPU or model is used. It stops when you quit."
)
TICK_MS = 2000
# Fixed widths of the columns after the reason (the reason takes what is left, then scrolls).
WIDTHS = {
    Column.STATUS: 28,
    Column.NAME: 150,
    Column.STATE: 96,
    Column.REASON: 300,
    Column.ACTIVITY: 96,
    Column.VRAM: 190,
    Column.QUEUE: 60,
    Column.DEVICE: 200,
    Column.VERSION: 70,
    Column.ADDRESS: 170,
}


def first_size(available: QSize) -> QSize:
    """The first window: 1440×860, or less where the screen has less room (its logical pixels:
    at scale 2 a 1920×1080 screen has 960×540), never past it."""
    return QSize(min(1440, available.width() * 92 // 100), min(860, available.height() * 9 // 10))


class MainWindow(QMainWindow):
    quitRequested = Signal()
    jobsRequested = Signal(bool)  # True: run Test fleet at once
    settingsRequested = Signal()
    noticeRaised = Signal(object, str, str)  # Notice (None: always said), title, text

    def __init__(
        self,
        keeper: ConfigKeeper,
        settings: QSettings,
        monitor: MonitorThread,
        checker: Checker,
        control: FleetControl,
        tunnels: TunnelControl,
        logs: LogSources,
        *,
        simulation: bool = False,
        startup_problem: str | None = None,
    ) -> None:
        super().__init__()
        self.keeper = keeper
        self._settings = settings
        self._monitor = monitor
        self._checker = checker
        self.control = control
        self.tunnels = tunnels
        self._logs = logs
        self._tasks = OwnedTasks(
            lambda what, exc: self.statusBar().showMessage(f"{what} failed: {exc}", 30000)
        )
        self._close_to_tray = False
        self._simulation = simulation
        self.gpu_problem: str | None = None  # why NVML cannot be read, for the setup
        self._announced: str | None = None
        self._followed: str | None = None
        self.log_viewers: list[LogViewer] = []
        self.history = FleetHistory()
        self.outages = Outages()
        self.gpus: tuple[GpuReading, ...] = ()
        self.setWindowTitle(f"{APP_NAME} — Simulation (demo fleet)" if simulation else APP_NAME)
        self.setObjectName("MainWindow")

        self.model = FleetTableModel()
        self.table = self._build_table()
        self.details = DetailsPane(self.history, self._log_tail, logs.state)
        self.getting_started = self._banner(GETTING_STARTED, "gettingStarted")
        self.simulation = self._banner(SIMULATION, "simulation")
        self.simulation.setVisible(simulation)
        self.problem = self._banner(startup_problem or "", "problem")
        self.problem.setVisible(bool(startup_problem))
        self.splitter = QSplitter(Qt.Orientation.Vertical)
        self.splitter.addWidget(self.table)
        self.splitter.addWidget(self.details)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 2)
        central = QWidget()
        layout = QVBoxLayout(central)
        for widget in (self.simulation, self.problem, self.getting_started):
            layout.addWidget(widget)
        layout.addWidget(self.splitter, 1)
        self.setCentralWidget(central)
        self.gpu_panel = GpuPanel()
        self.gpu_dock = self._build_dock()
        self.toolbar = FleetToolbar(self, simulation)
        self.addToolBar(self.toolbar)
        self.own_actions = self._own_actions()
        self.menus = MenuBar(self, {**self.toolbar.actions_by_key, **self.own_actions}, self.table)
        if "setup" in self.own_actions:
            setup = QPushButton("Set up the fleet…")
            setup.setObjectName("setupButton")
            setup.clicked.connect(self.own_actions["setup"].trigger)
            banner = self.getting_started.layout()
            assert isinstance(banner, QVBoxLayout)
            banner.addWidget(setup, 0, Qt.AlignmentFlag.AlignLeft)
        self.details.use_open_action(self.own_actions["open_in_browser"])
        self._connect_toolbar()
        self.summary = QLabel()
        self.summary.setObjectName("fleetSummary")
        self.tunnel_label = QLabel()
        self.statusBar().addWidget(self.summary, 1)
        self.statusBar().addPermanentWidget(self.tunnel_label)
        self.summary.setToolTip(f"Config: {keeper.store.path}")
        keeper.changed.connect(self._config_changed)
        keeper.failed.connect(lambda text: tell(self, text))
        control.on_start(lambda name: self._monitor.probe_now(name))
        logs.lineAdded.connect(self._log_line)
        self._show_config(keeper.config)
        self._restore_geometry()
        self._ticker = QTimer(self)
        self._ticker.timeout.connect(self._tick)
        self._ticker.start(TICK_MS)

    # building

    def _build_table(self) -> FleetTableView:
        table = FleetTableView(self.model)
        table.setObjectName("fleetTable")
        table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        table.setAlternatingRowColors(True)
        table.setWordWrap(False)
        table.setTextElideMode(Qt.TextElideMode.ElideRight)
        table.verticalHeader().hide()
        table.setItemDelegateForColumn(Column.STATUS, StatusLightDelegate(table))
        table.setItemDelegateForColumn(Column.VRAM, VramBarDelegate(table))
        table.setItemDelegateForColumn(Column.ACTIVITY, ActivityDelegate(table))
        # Fixed widths: ResizeToContents would measure every row on every update, which stalls
        # the window with a few hundred workers.
        header = table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(True)
        header.setMinimumSectionSize(28)
        for column, width in WIDTHS.items():
            table.setColumnWidth(column, width)
        table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        table.doubleClicked.connect(lambda _: self._edit_worker())
        table.setTabKeyNavigation(False)  # Tab leaves the table; arrows move in it
        table.setAccessibleName("Fleet: every instance, its state and why")
        table.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        table.customContextMenuRequested.connect(self._row_menu)
        table.selectionModel().selectionChanged.connect(lambda *_: self._selection_changed())
        return table

    def _banner(self, html: str, name: str) -> QFrame:
        frame = QFrame()
        frame.setObjectName(name)
        frame.setFrameShape(QFrame.Shape.StyledPanel)
        label = QLabel(html)
        label.setWordWrap(True)
        label.setTextFormat(Qt.TextFormat.RichText)
        label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        QVBoxLayout(frame).addWidget(label)
        return frame

    def _build_dock(self) -> QDockWidget:
        dock = QDockWidget("GPUs", self)
        dock.setObjectName("gpuDock")
        dock.setWidget(DockScroll(self.gpu_panel))
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
        return dock

    def _connect_toolbar(self) -> None:
        control = self.control
        self.toolbar.handle(
            {
                "add_worker": self._add_worker,
                "edit": self._edit_worker,
                "remove": self._remove_worker,
                "start": lambda: self._on_selected(control.start),
                "stop": lambda: self._on_selected(control.stop),
                "restart": lambda: self._on_selected(control.restart),
                "logs": lambda: self._on_selected(self.show_logs),
                "start_all": control.start_all,
                "stop_all": control.stop_all,
                "tunnel": self.tunnels.toggle,
                "jobs": lambda: self.jobsRequested.emit(False),
                "test_fleet": lambda: self.jobsRequested.emit(True),
                "check_now": lambda: self._monitor.probe_now(),
                "gpus": lambda: self.gpu_dock.setVisible(not self.gpu_dock.isVisible()),
                "settings": self.settingsRequested.emit,
            }
        )
        if "master" in self.toolbar.actions_by_key:
            self.toolbar.handle({"master": self._edit_master})
        self.tunnel_menu = TunnelMenu(self.tunnels, self.keeper, self)
        self.toolbar.use_menu("tunnel", self.tunnel_menu)
        self._selection_changed()

    def _own_actions(self) -> dict[str, QAction]:
        """The window's actions beside the toolbar's (the menus and the row menu hold them)."""
        made = {}
        specs = [
            ("quit", "Quit", "Stop what ComfyFleet started, and quit", self.quitRequested.emit),
            (
                "open_in_browser",
                "Open in browser",
                "The selected instance's ComfyUI page, at its address",
                self._open_selected,
            ),
            (
                "copy_reason",
                "Copy reason",
                "Copy the selected instance's state, why, and what to do",
                self._copy_reason,
            ),
            ("about", f"About {APP_NAME}", "", self._about),
        ]
        if not self._simulation:  # (the demo's fleet is the simulator's)
            setup_tip = "Find ComfyUI and the GPUs here; propose the master and a worker per GPU"
            specs.append(("setup", "Set up the fleet…", setup_tip, self._set_up))
        for key, text, tip, handler in specs:
            action = QAction(text, self)
            action.setObjectName(key)
            action.setToolTip(tip)
            action.triggered.connect(lambda _=False, run=handler: run())
            made[key] = action
        return made

    def add_panel(self, dock: QDockWidget, menu: str, shortcut: str) -> None:
        """A dock's own menu entry: it shows and raises the panel (View lists it too)."""
        action = QAction(f"{dock.windowTitle()} panel", self)
        action.setObjectName(f"show_{dock.objectName()}")
        action.setShortcut(shortcut)
        action.triggered.connect(dock.show)
        action.triggered.connect(dock.raise_)
        self.menus.menus[menu].addAction(action)
        self.menus.menus["View"].addAction(dock.toggleViewAction())

    def _row_menu(self, position: QPoint) -> None:
        index = self.table.indexAt(position)
        if index.isValid():
            self.table.selectRow(index.row())
            self.menus.row_menu.popup(self.table.viewport().mapToGlobal(position))

    def _selected_row(self) -> FleetRow | None:
        name = self.selected_name()
        return next((r for r in self.model.rows() if r.name == name), None) if name else None

    def _open_selected(self) -> None:
        row = self._selected_row()
        if row is not None and not open_in_browser(row.health.url):
            self.statusBar().showMessage(f"No browser opened {row.health.url}", 8000)

    def _copy_reason(self) -> None:
        row = self._selected_row()
        if row is None:
            return
        said = standing(row)
        lines = [f"{row.name}: {said.word}" + (f": {said.reason}" if said.reason else "")]
        lines += [f"What to do: {said.remedy}"] if said.remedy else []
        QGuiApplication.clipboard().setText("\n".join(lines))
        self.statusBar().showMessage(f"Copied what {row.name} says", 4000)

    def _about(self) -> None:
        tell(self, f"{APP_NAME} {__version__}: the control room for ComfyUI on many GPUs.", False)

    def changeEvent(self, event: QEvent) -> None:
        if event.type() == QEvent.Type.PaletteChange:
            self.toolbar.recolor()
        super().changeEvent(event)

    # live data

    def show_health(self, healths: list[WorkerHealth]) -> None:
        before = {r.name: r.health.state for r in self.model.rows()}
        self.model.update_healths(healths)
        for health in healths:
            if health.kind in ("remote", "cloud") and health.name in before:
                self._say_transition(health, before[health.name])
        self.summary.setText(fleet_summary([row.health for row in self.model.rows()]))
        if self.details.row is not None and any(h.name == self.details.row.name for h in healths):
            self._show_details()

    def _say_transition(self, health: WorkerHealth, was: WorkerState) -> None:
        """A remote or cloud worker going down or coming back is said; one that flaps is
        marked unstable and said once, not at every outage."""
        name, now = health.name, time.time()
        if was in UP and health.state is WorkerState.OFFLINE:
            count = self.outages.went_down(name, now)
            unstable = self.outages.unstable(name, now)
            self.model.update_unstable(name, unstable)
            if count == self.outages.threshold:
                minutes = round(self.outages.window_s / 60)
                text = f"{count} outages in {minutes} min; now: {health.error or 'no answer'}"
                self.noticeRaised.emit(Notice.WORKER_DOWN, f"{name} is unstable", text)
            elif not unstable:
                self.noticeRaised.emit(
                    Notice.WORKER_DOWN, f"{name} went down", health.error or "no answer"
                )
        elif (
            was is WorkerState.OFFLINE
            and health.state in UP
            and not self.outages.unstable(name, now)
        ):
            self.noticeRaised.emit(Notice.WORKER_UP, f"{name} is back", health.url)

    def show_instance(self, status: InstanceStatus) -> None:
        previous = next((r.instance for r in self.model.rows() if r.name == status.name), None)
        self.model.update_instance(status)
        changed = previous is None or previous.state != status.state
        if changed and status.state in (InstanceState.READY, InstanceState.STARTING):
            self._monitor.probe_now(status.name)  # say what it is now, not in a poll's time
        if status.state in CRASHED_STATES and changed and status.last_crash:
            body = f"{status.last_crash}. {status.message}"
            self.noticeRaised.emit(Notice.CRASH, f"{status.name} crashed", body)
        back = status.state is InstanceState.READY and status.restarts > 0
        if back and changed and previous is not None:
            self.noticeRaised.emit(
                Notice.RESTART,
                f"{status.name} is back",
                f"ready again after restart {status.restarts} ({status.last_crash or 'stopped'})",
            )
        self._show_details()

    def show_gpus(self, snapshot: GpuSnapshot) -> None:
        self.gpus = snapshot.gpus  # (the worker dialog's GPU picker lists them)
        self.gpu_problem = snapshot.error
        self.model.update_gpus(snapshot.gpus)
        self.gpu_panel.add_gpu_snapshot(snapshot)

    def show_tunnel(self, status: TunnelStatus) -> None:
        """Ready: the URL goes to the clipboard, a notification and the status bar."""
        text = {
            TunnelState.READY: f"Tunnel: {status.url}",
            TunnelState.STARTING: "Tunnel: starting…",
            TunnelState.URL_KNOWN: f"Tunnel: {status.url} (connecting…)",
        }
        self.tunnel_label.setText(text.get(status.state, ""))
        self.tunnel_label.setToolTip(status.master_note)
        if status.state is TunnelState.READY and status.url and status.url != self._announced:
            self._announced = status.url
            QGuiApplication.clipboard().setText(status.url)
            self.noticeRaised.emit(
                Notice.TUNNEL_READY, "Tunnel ready", f"{status.url} (copied). {status.master_note}"
            )
        if status.state is not TunnelState.READY:
            self._announced = None

    def _tick(self) -> None:
        rows = self.model.rows()
        for row in rows:
            if row.unstable:  # outages age out of the window
                self.model.update_unstable(row.name, self.outages.unstable(row.name, time.time()))
        self.history.sample(row.health for row in rows)
        self.model.tick(self.history)
        self.gpu_panel.show_instances(self.history, [row.health for row in rows])
        self.summary.setText(fleet_summary([row.health for row in rows]))
        self._show_details()

    # logs

    def show_logs(self, name: str) -> None:
        viewer = LogViewer(name, self._logs, self)
        viewer.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.log_viewers.append(viewer)
        viewer.destroyed.connect(lambda: self.log_viewers.remove(viewer))
        viewer.show()

    def _log_line(self, name: str, line: str) -> None:
        if self.details.row is not None and self.details.row.name == name:
            self._show_details()

    def _log_tail(self, name: str) -> list[str]:
        return self._logs.recent(name)

    def _follow_selected(self, name: str | None) -> None:
        """The selected remote instance's log is read while it is selected (for the pane)."""
        if name == self._followed:
            return
        if self._followed is not None:
            self._logs.unfollow(self._followed)
        self._followed = name
        if name is not None:
            self._logs.follow(name)

    # selection

    def selected_name(self) -> str | None:
        rows = self.table.selectionModel().selectedRows()
        if not rows:
            return None
        return self.model.row(self.table.source_row(rows[0])).name

    def _selection_changed(self) -> None:
        name = self.selected_name()
        config = self.keeper.config
        worker = config.worker(name) if name else None
        self.toolbar.follow_selection(
            name,
            bool(name and self.control.launchable(name)),
            worker is not None,
            worker is not None or (name == MASTER and "master" in self.toolbar.actions_by_key),
        )
        for key in ("open_in_browser", "copy_reason"):
            self.own_actions[key].setEnabled(name is not None)
        self._follow_selected(name)
        self._show_details()

    def _show_details(self) -> None:
        name = self.selected_name()
        row = next((r for r in self.model.rows() if r.name == name), None) if name else None
        self.details.show_row(row)

    def _on_selected(self, action: object) -> None:
        name = self.selected_name()
        if name is None:
            self.statusBar().showMessage("Select an instance in the table first.", 5000)
            return
        if action is not self.show_logs and not self.control.launchable(name):
            self.statusBar().showMessage(
                f"{name} is not launched by ComfyFleet: it runs elsewhere.", 8000
            )
            return
        action(name)  # type: ignore[operator]

    # config changes

    def _config_changed(self, previous: FleetConfig, config: FleetConfig) -> None:
        self._monitor.set_targets(targets_from_config(config))
        self._show_config(config)

    def _show_config(self, config: FleetConfig) -> None:
        supervisor = self.control.supervisor
        rows = [
            dataclasses.replace(
                r,
                health=self._monitor.health(r.name) or r.health,
                instance=supervisor.status(r.name),
            )
            for r in rows_from_config(config)
        ]
        self.model.set_rows(rows)
        self.getting_started.setVisible(not config.master.launched_by_app and not config.workers)
        if self.selected_name() is None and rows:
            self.table.selectRow(0)  # the details pane is never empty when there is a fleet
        self._selection_changed()

    def _add_worker(self) -> None:
        self._tasks.spawn(self._worker_dialog(None), "adding a worker")

    def _edit_worker(self) -> None:
        name = self.selected_name()
        if name == MASTER and "master" in self.toolbar.actions_by_key:
            self._edit_master()
        elif self.keeper.config.worker(name or "") is not None:
            self._tasks.spawn(self._worker_dialog(name), "editing a worker")

    async def _worker_dialog(self, name: str | None) -> None:
        config = self.keeper.config
        worker = config.worker(name) if name else None
        dialog = WorkerDialog(
            config, self._checker, worker, self.control.check_args, self, self.gpus
        )
        await self._apply_answer(dialog)

    def _remove_worker(self) -> None:
        worker = self.keeper.config.worker(self.selected_name() or "")
        if worker is not None:
            self._tasks.spawn(self._remove(worker.name), "removing a worker")

    async def _remove(self, name: str) -> None:
        if await ask(self, f"Remove worker {name}?") is not Button.Yes:
            return
        config = self.keeper.config
        workers = tuple(w for w in config.workers if w.name != name)
        self.keeper.apply(dataclasses.replace(config, workers=workers))

    def _edit_master(self) -> None:
        self._tasks.spawn(self._master_dialog(), "changing the master")

    async def _master_dialog(self) -> None:
        config = self.keeper.config
        choices = await asyncio.to_thread(find_install_choices, config)
        dialog = MasterDialog(config, self.gpus, choices, self.control.check_args, self)
        await self._apply_answer(dialog)

    def _set_up(self) -> None:
        self._tasks.spawn(self._setup_dialog(), "setting up the fleet")

    async def _setup_dialog(self) -> None:
        config = self.keeper.config
        choices = await asyncio.to_thread(find_install_choices, config)
        ports = {c.desktop_port for c in choices if c.desktop_port is not None}
        answering = frozenset(p for p in ports if not port_free(p))
        dialog = SetupDialog(config, self.gpus, choices, self.gpu_problem, answering, self)
        await self._apply_answer(dialog)

    async def _apply_answer(self, dialog: MasterDialog | SetupDialog | WorkerDialog) -> None:
        try:
            if await answer_of(dialog) and dialog.result_config is not None:
                self.keeper.apply(dialog.result_config)
        finally:
            dialog.deleteLater()

    # window state

    def _restore_geometry(self) -> None:
        geometry = self._settings.value("geometry")
        if isinstance(geometry, QByteArray) and self.restoreGeometry(geometry):
            state = self._settings.value("state")
            if isinstance(state, QByteArray):
                self.restoreState(state)
            return
        screen = self.screen() or QGuiApplication.primaryScreen()
        self.resize(first_size(screen.availableGeometry().size()))
        dock_width = min(480, max(240, self.width() // 4))  # two columns of charts from 1280 px
        self.resizeDocks([self.gpu_dock], [dock_width], Qt.Orientation.Horizontal)

    def save_geometry(self) -> None:
        self._settings.setValue("geometry", self.saveGeometry())
        self._settings.setValue("state", self.saveState())
        self._settings.sync()

    def set_close_to_tray(self, enabled: bool) -> None:
        """Closing hides the window (a tray is there and the user wants it), else quits."""
        self._close_to_tray = enabled

    def toggle_visible(self) -> None:
        if self.isVisible():
            self.hide()
        else:
            self.bring_to_front()

    def bring_to_front(self) -> None:
        self.show()
        self.setWindowState(self.windowState() & ~Qt.WindowState.WindowMinimized)
        self.raise_()
        self.activateWindow()

    def closeEvent(self, event: QCloseEvent) -> None:
        self.save_geometry()
        if not self._close_to_tray:
            event.accept()
            self.quitRequested.emit()
            return
        event.ignore()
        self.hide()
        if not self._settings.value("told_close_to_tray", False, bool):
            self._settings.setValue("told_close_to_tray", True)
            self.noticeRaised.emit(
                None,  # not a kind of event one turns off: said once
                f"{APP_NAME} is still running",
                "It keeps watching the fleet from the tray. Quit from the tray's menu.",
            )
