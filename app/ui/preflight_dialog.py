"""The preflight's answer per participant: ✔/✘, what is missing, and what to do about it."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QAction, QGuiApplication, QKeyEvent, QKeySequence
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


class AnswersTree(QTreeWidget):
    """Ctrl+C copies whole answers (a tree view would copy the current cell's text alone)."""

    copied = Signal()

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.matches(QKeySequence.StandardKey.Copy):
            self.copied.emit()
        else:
            super().keyPressEvent(event)


class PreflightDialog(QDialog):
    def __init__(
        self,
        checks: list[PreflightResult],
        parent: QWidget | None = None,
        model_sources: dict[str, str] | None = None,
        advice: Callable[[PreflightResult], str] = lambda check: "",
    ) -> None:
        """`model_sources`: model file → URL (the workflow's own list), for the script;
        `advice`: what to do about a failing participant, where it runs."""
        super().__init__(parent)
        self.checks = checks
        self.model_sources = model_sources or {}
        self._tasks = OwnedTasks()
        self.setWindowTitle("Preflight — some participants cannot run this workflow")
        self.resize(900, 360)
        self.table = AnswersTree()
        table = self.table
        table.setHeaderLabels(["Participant", "Ready?", "What to do"])
        table.setRootIsDecorated(False)
        table.setColumnWidth(0, 160)
        table.setColumnWidth(1, 340)
        for check in checks:
            item = QTreeWidgetItem([check.participant, check.summary(), advice(check)])
            for column in (1, 2):
                item.setToolTip(column, item.text(column))
            table.addTopLevelItem(item)
        self.details = QLabel()  # the chosen row's answer and advice in full, selectable
        self.details.setObjectName("preflightDetails")
        self.details.setWordWrap(True)
        self.details.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        table.currentItemChanged.connect(lambda item, _: self._show_details(item))
        first = next((i for i, c in enumerate(checks) if not c.ok), 0)
        if (chosen := table.topLevelItem(first)) is not None:
            table.setCurrentItem(chosen)
        copy = QAction("Copy", table)
        copy.setShortcut(QKeySequence.StandardKey.Copy)  # (said in the menu; the key: below)
        copy.triggered.connect(self.copy_selected)
        table.addAction(copy)
        table.setContextMenuPolicy(Qt.ContextMenuPolicy.ActionsContextMenu)
        table.copied.connect(self.copy_selected)
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
        layout.addWidget(self.details)
        if hint:
            layout.addWidget(QLabel(hint))
        layout.addWidget(buttons)

    def _show_details(self, item: QTreeWidgetItem | None) -> None:
        self.details.setText(_answer(item) if item else "")

    def copy_selected(self) -> None:
        """The chosen participants' answers and advice, as text for a chat or a ticket."""
        current = self.table.currentItem()
        items = self.table.selectedItems() or ([current] if current else [])
        QGuiApplication.clipboard().setText("\n".join(_answer(item) for item in items))

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


def _answer(item: QTreeWidgetItem) -> str:
    advice = f"\nWhat to do: {item.text(2)}" if item.text(2) else ""
    return f"{item.text(0)}: {item.text(1)}{advice}"
