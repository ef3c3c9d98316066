"""The master's settings, and the first-run setup: the ComfyUI installs found on this machine,
its GPUs, and the proposed master plus one worker per GPU, as a plan edited before it is
applied."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Coroutine, Sequence
from pathlib import Path

from PySide6.QtCore import QSignalBlocker, Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QButtonGroup,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QRadioButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.core.config import (
    LOOPBACK,
    MASTER,
    FleetConfig,
    MasterConfig,
    WorkerConfig,
    WorkerKind,
    validate_config,
)
from app.core.errors import ConfigError
from app.core.launch import GpuInfo, InstallChoice, propose_setup
from app.core.net import join_args, normalize_host, split_args
from app.services.gpus import GpuReading
from app.ui.ask import choose_path
from app.ui.worker_dialog import ArgsCheck, GpuPicker, gpu_users

WORKER_COLUMNS = ("Use", "Name", "Port", "GPU")


class MasterForm(QWidget):
    """Where the master runs: launched by ComfyFleet from a ComfyUI folder with a Python, or
    an already-running ComfyUI (ComfyUI Desktop, another machine) reached at an address."""

    def __init__(
        self, config: FleetConfig, gpus: Sequence[GpuReading], choices: Sequence[InstallChoice]
    ) -> None:
        super().__init__()
        self.launch = QRadioButton("ComfyFleet launches it from a ComfyUI folder")
        self.running = QRadioButton("It runs already (ComfyUI Desktop, another machine)")
        self.mode = QButtonGroup(self)
        self.mode.addButton(self.launch)
        self.mode.addButton(self.running)
        self.folder = QComboBox()
        self.folder.setEditable(True)
        self.folder.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        self.folder.setAccessibleName("ComfyUI folder")
        for choice in choices:
            self.folder.addItem(f"{choice.folder}", choice)
        self.browse_folder = QPushButton("Browse…")
        self.python = QLineEdit()
        self.python.setPlaceholderText("automatic: the install's venv, else ComfyFleet's Python")
        self.python.setAccessibleName("Python")
        self.browse_python = QPushButton("Browse…")
        self.host = QLineEdit()
        self.host.setAccessibleName("Host")
        self.port = QSpinBox()
        self.port.setRange(1, 65535)
        self.port.setMinimumWidth(110)
        self.port.setAccessibleName("Port")
        self.listen = QLineEdit()
        self.listen.setPlaceholderText("127.0.0.1 (this machine only); 0.0.0.0 for the LAN")
        others = dataclasses.replace(config, master=dataclasses.replace(config.master, gpu="cpu"))
        self.gpu = GpuPicker(gpus, gpu_users(others, gpus))  # (which workers use each GPU)
        self.gpu.setAccessibleName("GPU")
        self.extra_args = QLineEdit()
        self.extra_args.setPlaceholderText("e.g. --preview-method auto (checked with ComfyUI)")
        self.extra_args.setAccessibleName("Extra args")
        form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow("Master", self.launch)
        form.addRow("", self.running)
        form.addRow("ComfyUI folder", _beside(self.folder, self.browse_folder))
        form.addRow("Python", _beside(self.python, self.browse_python))
        form.addRow("Host", self.host)
        form.addRow("Port", self.port)
        form.addRow("Listen on", self.listen)
        form.addRow("GPU", self.gpu)
        form.addRow("Extra args", self.extra_args)
        self.launch.toggled.connect(self._mode_changed)
        self.browse_folder.clicked.connect(lambda: self._browse(self._pick_folder()))
        self.browse_python.clicked.connect(lambda: self._browse(self._pick_python()))
        self._task: asyncio.Task[None] | None = None
        self.load(config.master)

    def load(self, master: MasterConfig) -> None:
        (self.launch if master.launched_by_app else self.running).setChecked(True)
        if master.comfyui_dir:  # (else the folder found first, for switching to launching)
            if self.folder.findText(master.comfyui_dir) < 0:
                self.folder.addItem(master.comfyui_dir)
            self.folder.setCurrentIndex(self.folder.findText(master.comfyui_dir))
        self.python.setText(master.python or "")
        self.host.setText(master.host)
        self.port.setValue(master.port)
        self.listen.setText(master.listen or "")
        self.gpu.set_gpu(master.gpu)
        self.extra_args.setText(join_args(master.extra_args))
        self._mode_changed()

    def choice(self) -> InstallChoice | None:
        """The found install chosen (None: a folder typed or browsed to)."""
        data = self.folder.currentData()
        same = isinstance(data, InstallChoice) and str(data.folder) == self.folder.currentText()
        return data if same else None

    def build(self, base: MasterConfig) -> MasterConfig:
        """The master as entered; raises ConfigError naming the bad field."""
        launch = self.launch.isChecked()
        folder = self.folder.currentText().strip()
        if launch:
            if not folder:
                raise ConfigError("ComfyUI folder", "choose the folder ComfyUI runs from")
            if not (Path(folder).expanduser() / "main.py").is_file():
                raise ConfigError("ComfyUI folder", f"{folder} has no main.py")
        return dataclasses.replace(
            base,
            comfyui_dir=str(Path(folder).expanduser()) if launch else None,
            python=self.python.text().strip() or None,
            host=LOOPBACK if launch else normalize_host(self.host.text()),
            port=self.port.value(),
            listen=(self.listen.text().strip() or None) if launch else None,
            gpu=self.gpu.chosen() if launch else None,
            extra_args=split_args(self.extra_args.text(), "extra args") if launch else (),
        )

    def _mode_changed(self) -> None:
        launch = self.launch.isChecked()
        for widget in (
            self.folder,
            self.browse_folder,
            self.python,
            self.browse_python,
            self.listen,
            self.gpu,
            self.extra_args,
        ):
            widget.setEnabled(launch)
        self.host.setEnabled(not launch)
        if launch:
            self.host.setText(LOOPBACK)

    def _browse(self, pick: Coroutine[object, object, None]) -> None:
        self._task = asyncio.ensure_future(pick)

    async def _pick_folder(self) -> None:
        folder = await choose_path(
            self, "Choose your ComfyUI folder", QFileDialog.FileMode.Directory
        )
        if folder is not None:
            self.folder.setEditText(str(folder))

    async def _pick_python(self) -> None:
        python = await choose_path(
            self, "Choose the Python that runs ComfyUI", QFileDialog.FileMode.ExistingFile
        )
        if python is not None:
            self.python.setText(str(python))


def _beside(*widgets: QWidget) -> QWidget:
    row = QWidget()
    layout = QHBoxLayout(row)
    layout.setContentsMargins(0, 0, 0, 0)
    for number, widget in enumerate(widgets):
        layout.addWidget(widget, 1 if number == 0 else 0)
    return row


class MasterDialog(QDialog):
    """The master's address, port, folder, Python, GPU and extra args, at any time."""

    def __init__(
        self,
        config: FleetConfig,
        gpus: Sequence[GpuReading],
        choices: Sequence[InstallChoice],
        args_check: ArgsCheck | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Master")
        self.setMinimumWidth(620)
        self._config = config
        self._args_check = args_check
        self._task: asyncio.Task[None] | None = None
        self.result_config: FleetConfig | None = None
        self.form = MasterForm(config, gpus, choices)
        self.report = _report()
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.form)
        layout.addWidget(self.report)
        layout.addWidget(self.buttons)

    def accept(self) -> None:
        try:
            master = self.form.build(self._config.master)
            config = dataclasses.replace(self._config, master=master)
            validate_config(config)
        except ConfigError as exc:
            self.report.setText(f"✘ {exc}")
            return
        if self._args_check is None or not master.extra_args:
            self._done(config)
            return
        self.report.setText("Checking the extra args against ComfyUI's own command line…")
        self._task = asyncio.ensure_future(self._check_then_accept(config))

    async def _check_then_accept(self, config: FleetConfig) -> None:
        assert self._args_check is not None
        try:
            await self._args_check(config, MASTER)
        except ConfigError as exc:
            self.report.setText(f"✘ {exc}")
            return
        self._done(config)

    def _done(self, config: FleetConfig) -> None:
        self.result_config = config
        super().accept()


class SetupDialog(QDialog):
    """First run: what was found, and the proposed fleet as an editable plan."""

    def __init__(
        self,
        config: FleetConfig,
        gpus: Sequence[GpuReading],
        choices: Sequence[InstallChoice],
        gpu_problem: str | None = None,
        answering: frozenset[int] = frozenset(),
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Set up the fleet")
        self.setMinimumWidth(720)
        self._config = config
        self._gpus = [GpuInfo(g.index, g.uuid, g.name) for g in gpus]
        self._readings = {g.uuid: g for g in gpus}
        self._answering = answering  # loopback ports where something already listens
        self.result_config: FleetConfig | None = None
        self.found = QLabel(_found_text(choices, gpus, gpu_problem))
        self.found.setObjectName("setupFound")
        self.found.setWordWrap(True)
        self.found.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        first = choices[0] if choices else None
        self.plan = propose_setup(config, first, self._gpus, _connects(first, answering))
        self.form = MasterForm(self.plan, gpus, choices)
        self.workers = QTableWidget(0, len(WORKER_COLUMNS))
        self.workers.setObjectName("setupWorkers")
        self.workers.setAccessibleName("Workers to set up")
        self.workers.setHorizontalHeaderLabels(WORKER_COLUMNS)
        self.workers.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.workers.setTabKeyNavigation(False)
        header = self.workers.horizontalHeader()
        header.setSectionResizeMode(3, QHeaderView.ResizeMode.Stretch)
        self.workers.verticalHeader().hide()
        self.note = QLabel()
        self.note.setObjectName("setupNote")
        self.note.setWordWrap(True)
        self.report = _report()
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Apply | QDialogButtonBox.StandardButton.Cancel
        )
        self.apply_button = self.buttons.button(QDialogButtonBox.StandardButton.Apply)
        self.apply_button.clicked.connect(self.accept)
        self.apply_button.setDefault(True)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.found)
        layout.addWidget(self.form)
        layout.addWidget(QLabel("One worker per other GPU, each pinned by its UUID:"))
        layout.addWidget(self.workers, 1)
        layout.addWidget(self.note)
        layout.addWidget(self.report)
        layout.addWidget(self.buttons)
        self._show_workers(self.plan.workers)
        self._show_note()
        self.form.folder.currentIndexChanged.connect(lambda _: self._replan())
        self.form.launch.toggled.connect(lambda _: self._show_note())

    def _replan(self) -> None:
        """Another install chosen: ComfyUI Desktop's proposes its running server as master."""
        choice = self.form.choice()
        if choice is None:
            return
        self.plan = propose_setup(
            self._config, choice, self._gpus, _connects(choice, self._answering)
        )
        with QSignalBlocker(self.form.folder):
            self.form.load(self.plan.master)
        self._show_note()

    def _show_workers(self, workers: Sequence[WorkerConfig]) -> None:
        local = [w for w in workers if w.kind is WorkerKind.LOCAL]
        self.workers.setRowCount(len(local))
        for row, worker in enumerate(local):
            use = QTableWidgetItem()
            use.setFlags(Qt.ItemFlag.ItemIsUserCheckable | Qt.ItemFlag.ItemIsEnabled)
            use.setCheckState(Qt.CheckState.Checked)
            reading = self._readings.get(worker.gpu or "")
            gpu = QTableWidgetItem(
                f"{reading.index}: {reading.name} · {worker.gpu}" if reading else worker.gpu or ""
            )
            gpu.setData(Qt.ItemDataRole.UserRole, worker.gpu)
            gpu.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable)
            cells = (use, QTableWidgetItem(worker.name), QTableWidgetItem(str(worker.port)), gpu)
            for column, item in enumerate(cells):
                self.workers.setItem(row, column, item)
        self.workers.resizeColumnsToContents()

    def _show_note(self) -> None:
        notes = []
        choice = self.form.choice()
        if choice is not None and choice.desktop_port is not None:
            running = choice.desktop_port in self._answering
            notes.append(
                f"ComfyUI Desktop serves its ComfyUI on port {choice.desktop_port}"
                + (" (something listens there now)" if running else " while it is open")
                + ": connect to it as the master, or let ComfyFleet launch one on another port."
            )
        if not self._gpus:
            notes.append("No NVIDIA GPU was found: the master runs on the CPU, with no workers.")
        replaced = [w.name for w in self._config.workers if w.kind is WorkerKind.LOCAL]
        if replaced:
            notes.append(f"Applying replaces the local workers {', '.join(replaced)}.")
        self.note.setText(" ".join(notes))

    def planned(self) -> FleetConfig:
        """The plan as edited; raises ConfigError naming the bad field."""
        master = self.form.build(self.plan.master)
        workers: list[WorkerConfig] = []
        for row in range(self.workers.rowCount()):
            use, name_item, port_item, gpu = (self._cell(row, c) for c in range(4))
            if use.checkState() != Qt.CheckState.Checked:
                continue
            name = name_item.text().strip()
            port = port_item.text().strip()
            if not port.isdigit():
                raise ConfigError(f"{name or 'a worker'}: port", f"{port!r} is not a port")
            workers.append(
                WorkerConfig(
                    name, WorkerKind.LOCAL, port=int(port), gpu=gpu.data(Qt.ItemDataRole.UserRole)
                )
            )
        kept = tuple(w for w in self._config.workers if w.kind is not WorkerKind.LOCAL)
        config = dataclasses.replace(self.plan, master=master, workers=(*workers, *kept))
        validate_config(config)
        return config

    def _cell(self, row: int, column: int) -> QTableWidgetItem:
        item = self.workers.item(row, column)
        assert item is not None  # every cell is filled by _show_workers
        return item

    def accept(self) -> None:
        try:
            self.result_config = self.planned()
        except ConfigError as exc:
            self.report.setText(f"✘ {exc}")
            return
        super().accept()


def _connects(choice: InstallChoice | None, answering: frozenset[int]) -> bool:
    """ComfyUI Desktop's install: its server is the master while something listens on its port
    (the table then says whether that is ComfyUI)."""
    return choice is not None and choice.desktop_port in answering


def _found_text(
    choices: Sequence[InstallChoice], gpus: Sequence[GpuReading], gpu_problem: str | None
) -> str:
    lines = [f"ComfyUI: {c.folder} ({c.reason}); Python: {c.python.path}" for c in choices]
    if not choices:
        lines.append("No ComfyUI found in the usual places: choose its folder below.")
    lines += [
        f"GPU {g.index}: {g.name} · {g.memory_total / 2**30:.0f} GiB · {g.uuid}" for g in gpus
    ]
    if gpu_problem:
        lines.append(gpu_problem)
    return "\n".join(lines)


def _report() -> QLabel:
    report = QLabel()
    report.setObjectName("setupReport")
    report.setWordWrap(True)
    report.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    return report
