"""The preflight's answer per participant: ✔/✘, what is missing, and what to do about it."""

from __future__ import annotations

from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QLabel,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.core.runs import MASTER
from app.core.workflow import PreflightResult, missing_models_script


class PreflightDialog(QDialog):
    def __init__(self, checks: list[PreflightResult], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.checks = checks
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

    def ask(self) -> bool:
        """True: run without the failing workers; False: cancel."""
        return bool(self.exec())

    def _export(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Missing models per worker", "missing-models.sh", "Shell script (*.sh)"
        )
        if path:
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(missing_models_script(self.checks))
