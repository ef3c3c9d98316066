"""Add or edit a worker: one dialog for Local, Remote and Cloud, with Test connection."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Sequence

from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from app.core.config import (
    CLOUD_PORT,
    FleetConfig,
    WorkerConfig,
    WorkerKind,
    validate_config,
)
from app.core.errors import ConfigError
from app.core.net import base_url, join_args, normalize_host, parse_cloud_address, split_args
from app.services.gpus import GpuReading

Checker = Callable[[str], Awaitable[str]]
ArgsCheck = Callable[[FleetConfig, str], Awaitable[None]]  # raises ConfigError
KIND_HINTS = {
    WorkerKind.LOCAL: "A ComfyUI that ComfyFleet launches on this machine, on its own GPU.",
    WorkerKind.REMOTE: "A ComfyUI on another machine of your network, started with --listen.",
    WorkerKind.CLOUD: "A rented GPU (Runpod and friends): reached at https://HOST on port 443.",
}
HOST_HINTS = {
    WorkerKind.LOCAL: "127.0.0.1 (this machine)",
    WorkerKind.REMOTE: "LAN host name or IP, e.g. 192.168.1.20",
    WorkerKind.CLOUD: "host, https URL, or a Runpod pod id",
}


class WorkerDialog(QDialog):
    def __init__(
        self,
        config: FleetConfig,
        checker: Checker,
        worker: WorkerConfig | None = None,
        args_check: ArgsCheck | None = None,
        parent: QWidget | None = None,
        gpus: Sequence[GpuReading] = (),
    ) -> None:
        super().__init__(parent)
        self.setMinimumWidth(560)  # a Runpod proxy host and the hints fit
        self.setWindowTitle("Edit worker" if worker else "Add worker")
        self._config = config
        self._checker = checker
        self._args_check = args_check
        self._original = worker
        self._task: asyncio.Task[None] | None = None
        self.result_worker: WorkerConfig | None = None
        self.result_config: FleetConfig | None = None

        self.kind = QComboBox()
        for kind in WorkerKind:
            self.kind.addItem(kind.value.capitalize())
        self.name = QLineEdit()
        self.host = QLineEdit()
        self.port = QSpinBox()
        self.port.setRange(1, 65535)
        self.port.setMinimumWidth(110)  # five digits and the arrows, in any style
        self.gpu = GpuPicker(gpus, gpu_users(config, gpus, worker))
        self.gpu_hint = QLabel()
        self.gpu_hint.setWordWrap(True)
        self.gpu_hint.setObjectName("hint")
        self.gpu.editTextChanged.connect(lambda _: self._gpu_changed())
        self.extra_args = QLineEdit()
        self.extra_args.setPlaceholderText(
            "e.g. --lowvram --preview-method auto (checked with ComfyUI)"
        )
        self.host_hint = QLabel()
        self.host_hint.setWordWrap(True)
        self.host_hint.setObjectName("hint")
        self.enabled = QCheckBox("Enabled")
        self.enabled.setChecked(True)
        self.report = QLabel()
        self.report.setWordWrap(True)
        self.report.setObjectName("connectionReport")
        self.test_button = QPushButton("Test connection")
        self.test_button.clicked.connect(self._test)

        form = QFormLayout()
        for label, widget in (
            ("Type", self.kind),
            ("Name", self.name),
            ("Host", self.host),
            ("", self.host_hint),
            ("Port", self.port),
            ("GPU", self.gpu),
            ("", self.gpu_hint),
            ("Extra args", self.extra_args),
            ("", self.enabled),
        ):
            form.addRow(label, widget)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        self.ok_button = buttons.button(QDialogButtonBox.StandardButton.Ok)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.test_button)
        layout.addWidget(self.report)
        layout.addWidget(buttons)

        self.kind.currentIndexChanged.connect(self._kind_changed)
        self.host.editingFinished.connect(self._normalise_host)
        self._load(worker)

    def _load(self, worker: WorkerConfig | None) -> None:
        if worker is None:
            self.port.setValue(self._config.next_free_local_port())
            self._kind_changed()
            return
        self.kind.setCurrentIndex(list(WorkerKind).index(worker.kind))
        self.name.setText(worker.name)
        self.host.setText(worker.host)
        self.port.setValue(worker.port)
        self.gpu.set_gpu(worker.gpu)
        self.extra_args.setText(join_args(worker.extra_args))
        self.enabled.setChecked(worker.enabled)
        self._kind_changed()

    def selected_kind(self) -> WorkerKind:
        return list(WorkerKind)[self.kind.currentIndex()]

    def _kind_changed(self) -> None:
        kind = self.selected_kind()
        local = kind is WorkerKind.LOCAL
        self.host.setPlaceholderText(HOST_HINTS[kind])
        self.host_hint.setText(KIND_HINTS[kind])
        self.gpu.setEnabled(local)
        self._gpu_changed()
        self.extra_args.setEnabled(local)
        if local:
            self.host.setText("127.0.0.1")
        elif self.host.text() == "127.0.0.1" and kind is WorkerKind.CLOUD:
            self.host.clear()
        self.port.setEnabled(kind is not WorkerKind.CLOUD)  # always 443, as Distributed uses it
        if kind is WorkerKind.CLOUD:
            self.port.setValue(CLOUD_PORT)
        elif self.port.value() == CLOUD_PORT:
            self.port.setValue(8188)

    def _gpu_changed(self) -> None:
        local = self.selected_kind() is WorkerKind.LOCAL
        self.gpu_hint.setText(self.gpu.hint() if local else "")

    def _normalise_host(self) -> None:
        """A pasted Runpod pod id or proxy URL becomes the right host and port."""
        text = self.host.text().strip()
        if self.selected_kind() is WorkerKind.CLOUD and text:
            try:
                host, port = parse_cloud_address(text)
            except ConfigError as exc:
                self.report.setText(f"✘ {exc}")
                return
            self.host.setText(host)
            self.port.setValue(port)

    def build(self) -> WorkerConfig:
        """The worker as entered; raises ConfigError naming the bad field."""
        self._normalise_host()
        kind = self.selected_kind()
        local = kind is WorkerKind.LOCAL
        base = self._original or WorkerConfig(self.name.text().strip(), kind)
        return dataclasses.replace(
            base,
            name=self.name.text().strip(),
            kind=kind,
            host=normalize_host(self.host.text()),
            port=self.port.value(),
            gpu=self.gpu.chosen() if local else None,
            extra_args=split_args(self.extra_args.text(), "extra args") if local else (),
            enabled=self.enabled.isChecked(),
        )

    def config_with_worker(self) -> tuple[FleetConfig, WorkerConfig]:
        worker = self.build()
        if self._original is None:
            workers = (*self._config.workers, worker)
        else:
            workers = tuple(worker if w is self._original else w for w in self._config.workers)
        config = dataclasses.replace(self._config, workers=workers)
        validate_config(config)
        return config, worker

    def accept(self) -> None:
        try:
            config, worker = self.config_with_worker()
        except ConfigError as exc:
            self.report.setText(f"✘ {exc}")
            return
        if self._args_check is None or not worker.extra_args:
            self._done(config, worker)
            return
        self.report.setText("Checking the extra args against ComfyUI's own command line…")
        self.ok_button.setEnabled(False)
        self._task = asyncio.ensure_future(self._check_then_accept(config, worker))

    async def _check_then_accept(self, config: FleetConfig, worker: WorkerConfig) -> None:
        assert self._args_check is not None
        try:
            await self._args_check(config, worker.name)
        except ConfigError as exc:
            self.report.setText(f"✘ {exc}")
            return
        finally:
            self.ok_button.setEnabled(True)
        self._done(config, worker)

    def _done(self, config: FleetConfig, worker: WorkerConfig) -> None:
        self.result_config, self.result_worker = config, worker
        super().accept()

    def _test(self) -> None:
        try:
            worker = self.build()
        except ConfigError as exc:
            self.report.setText(f"✘ {exc}")
            return
        url = base_url(worker.host, worker.port, worker.kind is WorkerKind.CLOUD)
        self.report.setText(f"Testing {url}…")
        self.test_button.setEnabled(False)
        self._task = asyncio.ensure_future(self._run_test(url))

    async def _run_test(self, url: str) -> None:
        try:
            self.report.setText(await self._checker(url))
        finally:
            self.test_button.setEnabled(True)


class GpuPicker(QComboBox):
    """This machine's GPUs by index, name, VRAM and UUID, saying which instance uses each; an
    index, a GPU-… UUID or cpu may be typed too."""

    def __init__(self, gpus: Sequence[GpuReading], users: dict[str, str]) -> None:
        super().__init__()
        self.setEditable(True)
        self.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        editor = self.lineEdit()
        assert editor is not None  # (editable)
        editor.setPlaceholderText("a GPU below, an index, a GPU-… UUID, or cpu")
        self._users = users  # GPU UUID → who is configured on it
        self._first = gpus[0].uuid if gpus else None  # where an unpinned one computes
        self._by_index = {str(g.index): g.uuid for g in gpus}
        for gpu in gpus:
            user = users.get(gpu.uuid)
            label = f"{gpu.index}: {gpu.name} · {gpu.memory_total / 2**30:.0f} GiB · {gpu.uuid}"
            self.addItem(label + (f" — used by {user}" if user else ""), gpu.uuid)
        self.setCurrentIndex(-1)

    def set_gpu(self, gpu: str | None) -> None:
        self.setCurrentIndex(self.findData(self._by_index.get(gpu or "", gpu)) if gpu else -1)
        if self.currentIndex() < 0:
            self.setEditText(gpu or "")

    def chosen(self) -> str | None:
        text = self.currentText().strip()
        index = self.findText(text)
        return str(self.itemData(index)) if index >= 0 else (text or None)

    def hint(self) -> str:
        chosen = self.chosen()
        uuid = self._first if chosen is None else self._by_index.get(chosen, chosen)
        user = self._users.get(uuid or "")
        if chosen is None and self._first is not None:
            shared = f", which {user} uses too" if user else ""
            return f"No GPU chosen: it computes on GPU 0{shared}. Pick one of its own."
        if user:
            return f"{user} uses this GPU too: both share its VRAM and slow down"
        return ""


def gpu_users(
    config: FleetConfig, gpus: Sequence[GpuReading], editing: WorkerConfig | None = None
) -> dict[str, str]:
    """GPU UUID → the instance configured on it (an unpinned one computes on GPU 0)."""
    by_index = {str(g.index): g.uuid for g in gpus}
    configured = [("the master", config.master.gpu)] + [
        (w.name, w.gpu) for w in config.workers if w.kind is WorkerKind.LOCAL and w is not editing
    ]
    users: dict[str, str] = {}
    for name, gpu in configured:
        if gpu != "cpu":
            wanted = gpu or "0"  # (an index or a UUID)
            users.setdefault(by_index.get(wanted, wanted), name)
    return users
