"""The preflight's answer per participant: ✔/✘, what is missing, and what to do about it."""

from __future__ import annotations

from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.core.model_script import missing_models_script
from app.core.runs import MASTER
from app.core.workflow import PreflightResult
from app.services.tasks import OwnedTasks
from app.ui.ask import answer_of, choose_path


class PreflightDialog(QDialog):
    def __init__(
        self,
        checks: list[PreflightResult],
        parent: QWidget | None = None,
        model_sources: dict[str, str] | None = None,
    ) -> None:
        """`model_sources`: model file → URL (the workflow's own list), for the script."""
        super().__init__(parent)
        self.checks = checks
        self.model_sources = model_sources or {}
        self._tasks = OwnedTasks()
        self.setWindowTitle("Preflight — some participants cannot run this workflow")
        self.resize(760, 360)
        table = QTreeWidget()
        table.setHeaderLabels(["Participant", "Ready?"])
        table.setRootIsDecorated(False)
        table.setColumnWidth(0, 160)
        for check in checks:
            item = QTreeWidgetItem([check.participant, check.summary()])
            item.setToolTip(1, check.summary())
            table.addTopLevelItem(item)
        master_fails = any(c.participant == MASTER and not c.ok for c in checks)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.drop = QPushButton("Run without the failing workers")
        self.drop.setEnabled(not master_fails)
        buttons.addButton(self.drop, QDialogButtonBox.ButtonRole.AcceptRole)
        export = QPushButton("Export missing models…")
        export.setEnabled(any(c.missing_models for c in checks))
        export.clicked.connect(self._export)
        buttons.addButton(export, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        hint = "The master itself cannot run it: fix the master first." if master_fails else ""
        layout = QVBoxLayout(self)
        layout.addWidget(table, 1)
        if hint:
            layout.addWidget(QLabel(hint))
        layout.addWidget(buttons)

    async def ask(self) -> bool:
        """True: run without the failing workers; False: cancel."""
        return bool(await answer_of(self))

    def _export(self) -> None:
        self._tasks.spawn(self._save_script(), "saving the missing-models script")

    async def _save_script(self) -> None:
        path = await choose_path(
            self,
            "Missing models per worker",
            name_filter="Shell script (*.sh)",
            save_as="missing-models.sh",
        )
        if path is not None:
            path.write_text(
                missing_models_script(self.checks, self.model_sources), encoding="utf-8"
            )
