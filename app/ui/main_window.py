"""The main window: the live fleet table, a GPU panel, and plain-words guidance."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings, Qt, QTimer
from PySide6.QtGui import QAction, QCloseEvent, QGuiApplication
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDockWidget,
    QFileDialog,
    QFrame,
    QHeaderView,
    QLabel,
    QMainWindow,
    QMessageBox,
    QScrollArea,
    QToolBar,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app import APP_NAME
from app.core.config import FleetConfig, Notice
from app.core.errors import ComfyFleetError
from app.core.health import WorkerHealth
from app.core.tunnel import TunnelState
from app.services.gpus import GpuSnapshot
from app.services.monitor import targets_from_config
from app.services.monitor_thread import MonitorThread
from app.services.storage import ConfigStore
from app.services.supervisor import InstanceState, InstanceStatus
from app.services.tunnel import TunnelStatus
from app.ui.delegates import StatusLightDelegate, VramBarDelegate
from app.ui.fleet_control import FleetControl
from app.ui.gpu_panel import GpuPanel
from app.ui.log_viewer import LogViewer
from app.ui.tunnel_menu import TunnelMenu
from app.ui.worker_dialog import Checker, WorkerDialog
from app.ui.worker_table import (
    CRASHED_STATES,
    Column,
    FleetTableModel,
    FleetTableView,
    rows_from_config,
)

GETTING_STARTED = """
<h3>Welcome to ComfyFleet</h3>
<p>No ComfyUI is set up yet. ComfyFleet runs your ComfyUI master and one worker per GPU,
and watches remote and cloud workers.</p>
<ol>
<li><b>Set ComfyUI folder…</b> (above) if ComfyUI is installed on this machine, or leave the
master as it is if ComfyUI already runs at the address below (ComfyUI Desktop, another box).</li>
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


class MainWindow(QMainWindow):
    def __init__(
        self,
        store: ConfigStore,
        config: FleetConfig,
        settings: QSettings,
        monitor: MonitorThread,
        checker: Checker,
        control: FleetControl,
        *,
        simulation: bool = False,
        startup_problem: str | None = None,
    ) -> None:
        super().__init__()
        self._store = store
        self._config = config
        self._settings = settings
        self._monitor = monitor
        self._checker = checker
        self.control = control
        control.confirm = self._confirm
        control.error = self._warn
        control.change_port = self._change_port
        control.save_config = self.apply_config
        self.tunnel_label = QLabel()
        self.log_viewers: list[LogViewer] = []
        self.notify: Callable[[Notice, str, str], None] = lambda notice, title, text: (
            self.statusBar().showMessage(f"{title}: {text}", 15000)
        )
        self.close_hides: Callable[[], bool] = lambda: False
        self.on_quit: Callable[[], None] = lambda: None
        self.open_jobs: Callable[[bool], None] = lambda test_fleet: None
        self.open_settings: Callable[[], None] = lambda: None
        self.config_saved: Callable[[FleetConfig, FleetConfig], None] = lambda old, new: None
        self._fitted_to_data = False
        self._announced: str | None = None
        self.setWindowTitle(f"{APP_NAME} — Simulation (demo fleet)" if simulation else APP_NAME)
        self.setObjectName("MainWindow")

        self.model = FleetTableModel()
        self.table = self._build_table()
        self.getting_started = self._banner(GETTING_STARTED, "gettingStarted")
        self.simulation = self._banner(SIMULATION, "simulation")
        self.simulation.setVisible(simulation)
        self.problem = self._banner(startup_problem or "", "problem")
        self.problem.setVisible(bool(startup_problem))
        central = QWidget()
        layout = QVBoxLayout(central)
        for widget in (self.simulation, self.problem, self.getting_started):
            layout.addWidget(widget)
        layout.addWidget(self.table, 1)
        self.setCentralWidget(central)
        self.gpu_panel = GpuPanel()
        self._build_dock()
        self._build_toolbar(simulation)
        self.statusBar().showMessage(f"Config: {store.path}")
        self.statusBar().addPermanentWidget(self.tunnel_label)
        self._show_config(config)
        self._restore_geometry()
        self._ticker = QTimer(self)
        self._ticker.timeout.connect(self._tick)
        self._ticker.start(2000)

    def _build_table(self) -> FleetTableView:
        table = FleetTableView(self.model)
        table.setObjectName("fleetTable")
        table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        table.setAlternatingRowColors(True)
        table.setWordWrap(False)
        table.verticalHeader().hide()
        table.setItemDelegateForColumn(Column.STATUS, StatusLightDelegate(table))
        table.setItemDelegateForColumn(Column.VRAM, VramBarDelegate(table))
        # Interactive widths, fitted once per config: ResizeToContents would measure every
        # row on every update, which stalls the window with a few hundred workers.
        header = table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(True)
        header.setMinimumSectionSize(28)
        table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        table.doubleClicked.connect(lambda _: self._edit_worker())
        return table

    def _fit_columns(self) -> None:
        self.table.resizeColumnsToContents()
        self.table.setColumnWidth(Column.STATUS, 28)
        self.table.setColumnWidth(Column.VRAM, 190)
        for column in (Column.UTIL, Column.QUEUE, Column.LATENCY, Column.UPTIME):
            self.table.setColumnWidth(column, max(self.table.columnWidth(column), 72))

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

    def _build_dock(self) -> None:
        dock = QDockWidget("GPUs", self)
        dock.setObjectName("gpuDock")
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.gpu_panel)
        scroll.setMinimumWidth(300)
        dock.setWidget(scroll)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)

    def _build_toolbar(self, simulation: bool) -> None:
        toolbar = QToolBar("Fleet")
        toolbar.setObjectName("fleetToolbar")
        toolbar.setMovable(False)
        actions: list[tuple[str, Callable[[], None]] | None] = [
            ("Add worker…", self._add_worker),
            ("Edit…", self._edit_worker),
            ("Remove", self._remove_worker),
            ("Check now", lambda: self._monitor.probe_now()),
            None,
            ("Start", lambda: self._on_selected(self.control.start)),
            ("Stop", lambda: self._on_selected(self.control.stop)),
            ("Restart", lambda: self._on_selected(self.control.restart)),
            ("Logs", lambda: self._on_selected(self.show_logs)),
            None,
            ("Tunnel", self.control.toggle_tunnel),
            None,
            ("Start all", self.control.start_all),
            ("Stop all", self.control.stop_all),
            None,
            ("Jobs…", lambda: self.open_jobs(False)),
            ("Test fleet", lambda: self.open_jobs(True)),
            None,
            ("Settings…", lambda: self.open_settings()),
        ]
        if not simulation:
            actions.insert(0, ("Set ComfyUI folder…", self._choose_comfyui))
        for item in actions:
            if item is None:
                toolbar.addSeparator()
                continue
            action = QAction(item[0], self)
            action.setObjectName(item[0].rstrip("…").replace(" ", "_").lower())
            action.triggered.connect(item[1])
            toolbar.addAction(action)
        self.addToolBar(toolbar)
        self.tunnel_menu = TunnelMenu(self.control, lambda: self._config, self.apply_config, self)
        tunnel = self.findChild(QAction, "tunnel")
        assert tunnel is not None
        tunnel.setMenu(self.tunnel_menu)  # click: start/stop; the arrow: which tunnel
        button = toolbar.widgetForAction(tunnel)
        if isinstance(button, QToolButton):
            button.setPopupMode(QToolButton.ToolButtonPopupMode.MenuButtonPopup)

    # live data

    def show_health(self, healths: list[WorkerHealth]) -> None:
        self.model.update_healths(healths)
        if not self._fitted_to_data and any(h.device for h in healths):
            self._fitted_to_data = True  # once: the first answers bring the long names
            self._fit_columns()

    def show_instance(self, status: InstanceStatus) -> None:
        previous = next((r.instance for r in self.model.rows() if r.name == status.name), None)
        self.model.update_instance(status)
        crashed = status.state in CRASHED_STATES
        changed = previous is None or previous.state != status.state
        if crashed and changed and status.last_crash:
            body = f"{status.last_crash}. {status.message}"
            self.notify(Notice.CRASH, f"{status.name} crashed", body)
        back = status.state is InstanceState.READY and status.restarts > 0
        if back and changed and previous is not None:
            self.notify(
                Notice.RESTART,
                f"{status.name} is back",
                f"ready again after restart {status.restarts} ({status.last_crash or 'stopped'})",
            )

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
            self.notify(
                Notice.TUNNEL_READY, "Tunnel ready", f"{status.url} (copied). {status.master_note}"
            )
        if status.state is not TunnelState.READY:
            self._announced = None

    def show_logs(self, name: str) -> None:
        supervisor = self.control.supervisor
        viewer = LogViewer(name, supervisor.lines(name), supervisor.log_path(name), self)
        viewer.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.log_viewers.append(viewer)
        viewer.destroyed.connect(lambda: self.log_viewers.remove(viewer))
        viewer.show()

    def add_log_line(self, name: str, line: str) -> None:
        for viewer in self.log_viewers:
            viewer.add_line(name, line)

    def _on_selected(self, action: Callable[[str], None]) -> None:
        name = self.selected_name()
        if name is None:
            self.statusBar().showMessage("Select an instance in the table first.", 5000)
            return
        if action != self.show_logs and not self.control.launchable(name):
            self.statusBar().showMessage(
                f"{name} is not launched by ComfyFleet: it runs elsewhere.", 8000
            )
            return
        action(name)

    def _warn(self, text: str) -> None:
        QMessageBox.warning(self, APP_NAME, text)

    def _confirm(self, text: str) -> bool:
        answer = QMessageBox.question(self, APP_NAME, text)
        return answer == QMessageBox.StandardButton.Yes

    def _change_port(self, name: str, port: int) -> bool:
        if name == "master":
            master = dataclasses.replace(self._config.master, port=port)
            return self.apply_config(dataclasses.replace(self._config, master=master))
        workers = tuple(
            dataclasses.replace(w, port=port) if w.name == name else w for w in self._config.workers
        )
        return self.apply_config(dataclasses.replace(self._config, workers=workers))

    def show_gpus(self, snapshot: GpuSnapshot) -> None:
        self.model.update_gpus(snapshot.gpus)
        self.gpu_panel.add_gpu_snapshot(snapshot)

    def _tick(self) -> None:
        self.model.tick()
        self.gpu_panel.sample_workers([row.health for row in self.model.rows()])

    # config changes

    def _show_config(self, config: FleetConfig) -> None:
        self._config = config
        rows = rows_from_config(config)
        supervisor = self.control.supervisor
        rows = [
            dataclasses.replace(
                r,
                health=self._monitor.health(r.name) or r.health,
                instance=supervisor.status(r.name),
            )
            for r in rows
        ]
        self.model.set_rows(rows)
        self._fit_columns()
        self._fitted_to_data = False
        self.getting_started.setVisible(not config.master.launched_by_app and not config.workers)

    def apply_config(self, config: FleetConfig) -> bool:
        try:
            self._store.save(config)
        except ComfyFleetError as exc:
            QMessageBox.critical(self, APP_NAME, str(exc))
            return False
        self._monitor.set_targets(targets_from_config(config))
        self.control.config = config
        previous = self._config
        self._show_config(config)
        self.config_saved(previous, config)
        return True

    def selected_name(self) -> str | None:
        rows = self.table.selectionModel().selectedRows()
        if not rows:
            return None
        return self.model.row(self.table.source_row(rows[0])).name

    def _add_worker(self) -> None:
        dialog = WorkerDialog(self._config, self._checker, args_check=self.control.check_args)
        if dialog.exec() and dialog.result_config is not None:
            self.apply_config(dialog.result_config)

    def _edit_worker(self) -> None:
        worker = self._config.worker(self.selected_name() or "")
        if worker is None:
            return
        dialog = WorkerDialog(
            self._config, self._checker, worker, args_check=self.control.check_args
        )
        if dialog.exec() and dialog.result_config is not None:
            self.apply_config(dialog.result_config)

    def _remove_worker(self) -> None:
        worker = self._config.worker(self.selected_name() or "")
        if worker is None:
            return
        answer = QMessageBox.question(self, APP_NAME, f"Remove worker {worker.name}?")
        if answer == QMessageBox.StandardButton.Yes:
            workers = tuple(w for w in self._config.workers if w is not worker)
            self.apply_config(dataclasses.replace(self._config, workers=workers))

    def _choose_comfyui(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Choose your ComfyUI folder")
        if not folder:
            return
        if not (Path(folder) / "main.py").is_file():
            QMessageBox.warning(
                self, APP_NAME, f"{folder} has no main.py. Choose the folder ComfyUI runs from."
            )
            return
        master = dataclasses.replace(self._config.master, comfyui_dir=folder)
        self.apply_config(dataclasses.replace(self._config, master=master))

    # window state

    def _restore_geometry(self) -> None:
        geometry = self._settings.value("geometry")
        if isinstance(geometry, QByteArray) and self.restoreGeometry(geometry):
            state = self._settings.value("state")
            if isinstance(state, QByteArray):
                self.restoreState(state)
            return
        self.resize(1440, 680)

    def save_geometry(self) -> None:
        self._settings.setValue("geometry", self.saveGeometry())
        self._settings.setValue("state", self.saveState())
        self._settings.sync()

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
        if self.close_hides():
            event.ignore()
            self.hide()
        else:
            event.accept()
            self.on_quit()
