"""The Cloud panel: Runpod pods with their cost, their actions, and the recipe to rent one."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Protocol

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from app.core.cloud import DISTRIBUTED_TEMPLATE, Pod, PodRecipe, money, uptime_text
from app.core.errors import ComfyFleetError
from app.services.runpod import GpuType
from app.ui.ask import answer_of, confirm
from app.ui.narrow import ColumnsThatFit, button_row
from app.ui.rows_model import Index, RowsModel

COLUMNS = ("Name", "GPU", "Status", "Cost", "Up", "GPU use")


class CloudActions(Protocol):
    async def login(self, key: str) -> str: ...
    async def act(self, pod: Pod, verb: str) -> None: ...
    async def create(self, recipe: PodRecipe, name: str) -> None: ...
    async def gpu_types(self) -> list[GpuType]: ...
    async def logs(self, pod: Pod) -> list[str]: ...


class PodsModel(RowsModel):
    columns = COLUMNS

    @property
    def pods(self) -> list[Pod]:
        return self.rows

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        pod = self.pods[index.row()]
        if role == Qt.ItemDataRole.ToolTipRole:
            return f"{pod.id}: {pod.gpu_count}× {pod.gpu_type}"
        if role != Qt.ItemDataRole.DisplayRole:
            return None
        return (
            pod.name,
            f"{pod.gpu_count}× {pod.gpu_type.removeprefix('NVIDIA ').removeprefix('GeForce ')}",
            pod.status.lower(),
            f"{money(pod.cost_per_h)}/h",
            uptime_text(pod.uptime_s),
            " ".join(f"{u}%" for u in pod.gpu_util) or "—",
        )[index.column()]


class LoginDialog(QDialog):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Runpod API key")
        self.key = QLineEdit()
        self.key.setEchoMode(QLineEdit.EchoMode.Password)
        self.key.setPlaceholderText("rpa_…")
        form = QFormLayout(self)
        form.addRow(QLabel("Kept in the system keyring only; checked with Runpod first."))
        form.addRow("API key", self.key)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)


class RecipeDialog(QDialog):
    """A pod to rent: a GPU type from the catalog with its price, and how to start ComfyUI."""

    def __init__(
        self, recipe: PodRecipe, gpus: Sequence[GpuType], parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Rent a Runpod GPU")
        self.setMinimumWidth(520)
        self.gpu = QComboBox()
        for gpu in sorted(gpus, key=lambda g: g.secure_per_h):
            text = (
                f"{gpu.name} · {gpu.memory_gb} GB · {money(gpu.secure_per_h)}/h "
                f"({money(gpu.community_per_h)}/h community)"
            )
            self.gpu.addItem(text, gpu.id)
        found = self.gpu.findData(recipe.gpu_type)
        self.gpu.setCurrentIndex(max(0, found))
        self.count = QSpinBox()
        self.count.setRange(1, 8)
        self.count.setValue(recipe.gpu_count)
        self.template = QLineEdit(recipe.template_id or "")
        self.template.setPlaceholderText(f"{DISTRIBUTED_TEMPLATE} (ComfyUI-Distributed's)")
        self.image = QLineEdit(recipe.image or "")
        self.image.setPlaceholderText("or a container image of your own")
        self.cloud = QComboBox()
        self.cloud.addItems(["SECURE", "COMMUNITY"])
        self.cloud.setCurrentText(recipe.cloud)
        self.volume = QLineEdit(recipe.network_volume or "")
        self.volume.setPlaceholderText("none (a network volume id keeps models between pods)")
        self.name = QLineEdit()
        self.name.setPlaceholderText("comfyfleet-… (made from the time)")
        self._recipe = recipe
        form = QFormLayout(self)
        form.addRow("GPU", self.gpu)
        form.addRow("GPUs", self.count)
        form.addRow("Template", self.template)
        form.addRow("Image", self.image)
        form.addRow("Cloud", self.cloud)
        form.addRow("Network volume", self.volume)
        form.addRow("Name", self.name)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Rent it")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def recipe(self) -> PodRecipe:
        image = self.image.text().strip() or None
        return PodRecipe(
            gpu_type=str(self.gpu.currentData()),
            gpu_count=self.count.value(),
            template_id=None if image else (self.template.text().strip() or DISTRIBUTED_TEMPLATE),
            image=image,
            cloud=self.cloud.currentText(),
            cuda_versions=self._recipe.cuda_versions,
            network_volume=self.volume.text().strip() or None,
            env=self._recipe.env,
        )


class CloudPanel(QWidget):
    def __init__(
        self,
        spawn: Callable[[Coroutine[Any, Any, None], str], object],
        actions: CloudActions,
        recipe: Callable[[], PodRecipe],
    ) -> None:
        super().__init__()
        self._spawn, self._actions, self._recipe = spawn, actions, recipe
        self.log_dialog: QDialog | None = None
        self.summary = QLabel("Runpod: not logged in.")
        self.summary.setWordWrap(True)
        self.model = PodsModel()
        self.view = QTableView()
        self.view.setModel(self.model)
        self.view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.view.verticalHeader().hide()
        self.view.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.view.horizontalHeader().setStretchLastSection(True)
        self.view.selectionModel().selectionChanged.connect(lambda *_: self._enable())
        self.decisions = QLabel()
        self.decisions.setWordWrap(True)
        self.decisions.setObjectName("hint")
        self.login_button = self._button("Log in…", self.ask_key)
        self.create_button = self._button("Rent a GPU…", self._create)
        self.buttons = {verb: self._button(verb.capitalize(), self._acting(verb))
                        for verb in ("start", "stop", "restart", "terminate")}  # fmt: skip
        self.logs_button = self._button("Logs", self._show_logs)
        ColumnsThatFit(self.view)
        layout = QVBoxLayout(self)
        layout.addWidget(self.summary)
        layout.addWidget(button_row(self.login_button, self.create_button))
        layout.addWidget(self.view, 1)
        layout.addWidget(button_row(*self.buttons.values(), self.logs_button))
        layout.addWidget(self.decisions)
        self._enable()

    @staticmethod
    def _button(text: str, slot: Callable[[], None]) -> QPushButton:
        button = QPushButton(text)
        button.clicked.connect(slot)
        return button

    def show_pods(
        self, pods: Sequence[Pod], summary: str, decisions: Sequence[str], logged_in: bool
    ) -> None:
        chosen = self.selected()
        self.model.show(pods)
        if chosen is not None:
            row = next((n for n, p in enumerate(pods) if p.id == chosen.id), None)
            if row is not None:
                self.view.selectRow(row)
        self.summary.setText(summary)
        self.decisions.setText("\n".join(decisions[-3:]))
        self.login_button.setText("Change key…" if logged_in else "Log in…")
        self.create_button.setEnabled(logged_in)
        self._enable()

    def selected(self) -> Pod | None:
        rows = self.view.selectionModel().selectedRows()
        return self.model.pods[rows[0].row()] if rows else None

    def _enable(self) -> None:
        pod = self.selected()
        for verb, button in self.buttons.items():
            button.setEnabled(pod is not None and verb in pod.actions)
        self.logs_button.setEnabled(pod is not None)

    def say(self, text: str) -> None:
        self.decisions.setText(text)

    # actions (awaited dialogs, never exec())

    def ask_key(self) -> None:
        """The Runpod API key (from the panel, or Settings → Cloud)."""
        self._spawn(self._ask_key(), "logging in to Runpod")

    async def _ask_key(self) -> None:
        dialog = LoginDialog(self)
        try:
            if await answer_of(dialog) and dialog.key.text().strip():
                self.say(await self._actions.login(dialog.key.text().strip()))
        except ComfyFleetError as exc:
            self.say(f"Not stored: {exc}")
        finally:
            dialog.deleteLater()

    def _create(self) -> None:
        self._spawn(self._ask_recipe(), "renting a pod")

    async def _ask_recipe(self) -> None:
        try:
            gpus = await self._actions.gpu_types()
        except ComfyFleetError as exc:
            self.say(str(exc))
            return
        dialog = RecipeDialog(self._recipe(), gpus, self)
        try:
            if await answer_of(dialog):
                self.say("Renting…")
                await self._actions.create(dialog.recipe(), dialog.name.text().strip())
        except ComfyFleetError as exc:
            self.say(f"Not rented: {exc}")
        finally:
            dialog.deleteLater()

    def _show_logs(self) -> None:
        self._spawn(self._open_logs(), "reading a pod's log")

    async def _open_logs(self) -> None:
        pod = self.selected()
        if pod is None:
            return
        try:
            lines = await self._actions.logs(pod)
        except ComfyFleetError as exc:
            self.say(f"{pod.name}: {exc}")
            return
        dialog = QDialog(self)
        dialog.setWindowTitle(f"Log of {pod.name} ({pod.id})")
        dialog.resize(760, 420)
        text = QPlainTextEdit("\n".join(lines) or "(nothing logged yet)")
        text.setReadOnly(True)
        QVBoxLayout(dialog).addWidget(text)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.open()  # nothing waits on it
        self.log_dialog = dialog

    def _acting(self, verb: str) -> Callable[[], None]:
        def act() -> None:
            self._spawn(self._act(verb), f"{verb} a pod")

        return act

    async def _act(self, verb: str) -> None:
        pod = self.selected()
        if pod is None:
            return
        if verb == "terminate":
            question = (
                f"Terminate pod {pod.name} ({pod.gpu_count}× {pod.gpu_type}, "
                f"{money(pod.cost_per_h)}/h)? Its disk is deleted; this cannot be undone."
            )
            if not await confirm(self, question):
                return
        try:
            await self._actions.act(pod, verb)
        except ComfyFleetError as exc:
            self.say(f"{pod.name}: {exc}")
