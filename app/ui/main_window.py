"""The main window: the fleet table, with plain-words guidance when there is nothing yet."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings, Qt
from PySide6.QtGui import QAction, QCloseEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QFrame,
    QHeaderView,
    QLabel,
    QMainWindow,
    QMessageBox,
    QTableView,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from app import APP_NAME
from app.core.config import FleetConfig
from app.core.errors import ComfyFleetError
from app.services.storage import ConfigStore
from app.ui.worker_table import Column, FleetTableModel, rows_from_config

GETTING_STARTED = """
<h3>Welcome to ComfyFleet</h3>
<p>No ComfyUI is set up yet. ComfyFleet runs your ComfyUI master and one worker per GPU,
and watches remote and cloud workers.</p>
<ol>
<li><b>Set ComfyUI folder…</b> (above) if ComfyUI is installed on this machine, or leave the
master as it is if ComfyUI already runs at the address below (ComfyUI Desktop, another box).</li>
<li>Add workers from a terminal: <code>comfy-fleet worker add local --name gpu1 --gpu 1</code>,
<code>comfy-fleet worker add cloud --name pod --host &lt;runpod pod id&gt;</code>,
or import ComfyUI-Distributed's settings with
<code>comfy-fleet config import-distributed gpu_config.json</code>.</li>
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
        *,
        simulation: bool = False,
        startup_problem: str | None = None,
    ) -> None:
        super().__init__()
        self._store = store
        self._config = config
        self._settings = settings
        self.close_hides: Callable[[], bool] = lambda: False
        title = f"{APP_NAME} — Simulation (demo fleet)" if simulation else APP_NAME
        self.setWindowTitle(title)
        self.setObjectName("MainWindow")

        self.model = FleetTableModel()
        self.table = self._build_table()
        self.getting_started = self._banner(GETTING_STARTED, "gettingStarted")
        self.problem = self._banner(startup_problem or "", "problem")
        self.problem.setVisible(bool(startup_problem))
        self.simulation = self._banner(SIMULATION, "simulation")
        self.simulation.setVisible(simulation)

        central = QWidget()
        layout = QVBoxLayout(central)
        layout.addWidget(self.simulation)
        layout.addWidget(self.problem)
        layout.addWidget(self.getting_started)
        layout.addWidget(self.table, 1)
        self.setCentralWidget(central)
        if not simulation:
            self._build_toolbar()
        self.statusBar().showMessage(f"Config: {store.path}")
        self._show_config(config)
        self._restore_geometry()

    def _build_table(self) -> QTableView:
        table = QTableView()
        table.setObjectName("fleetTable")
        table.setModel(self.model)
        table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        table.setAlternatingRowColors(True)
        table.verticalHeader().hide()
        header = table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(Column.DETAIL, QHeaderView.ResizeMode.Stretch)
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

    def _build_toolbar(self) -> None:
        toolbar = QToolBar("Fleet")
        toolbar.setObjectName("fleetToolbar")
        toolbar.setMovable(False)
        choose = QAction("Set ComfyUI folder…", self)
        choose.triggered.connect(self._choose_comfyui)
        toolbar.addAction(choose)
        self.addToolBar(toolbar)

    def _show_config(self, config: FleetConfig) -> None:
        self._config = config
        self.model.set_rows(rows_from_config(config))
        nothing_yet = not config.master.launched_by_app and not config.workers
        self.getting_started.setVisible(nothing_yet)

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
        config = dataclasses.replace(self._config, master=master)
        try:
            self._store.save(config)
        except ComfyFleetError as exc:
            QMessageBox.critical(self, APP_NAME, str(exc))
            return
        self._show_config(config)

    def _restore_geometry(self) -> None:
        geometry = self._settings.value("geometry")
        if isinstance(geometry, QByteArray) and self.restoreGeometry(geometry):
            return
        self.resize(960, 560)

    def save_geometry(self) -> None:
        self._settings.setValue("geometry", self.saveGeometry())
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
