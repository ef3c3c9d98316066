"""The main window's toolbar: actions in groups, with icons that follow the palette, and the
ones that need a selected row (or a launchable one) enabled only then, saying why not."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QPalette
from PySide6.QtWidgets import QToolBar, QToolButton, QWidget

from app.ui.icons import action_icon


@dataclass(frozen=True)
class Spec:
    key: str  # the action's objectName (tests and the tray find it so)
    text: str
    icon: str
    tip: str


GROUPS: tuple[tuple[Spec, ...], ...] = (
    (
        Spec("add_worker", "Add worker…", "add", "Add a local, LAN or cloud worker"),
        Spec("edit", "Edit…", "edit", "Change the selected worker"),
        Spec("remove", "Remove", "remove", "Remove the selected worker"),
    ),
    (
        Spec("start", "Start", "start", "Start the selected instance"),
        Spec("stop", "Stop", "stop", "Stop the selected instance"),
        Spec("restart", "Restart", "restart", "Restart the selected instance"),
        Spec("logs", "Logs", "logs", "The selected instance's log, live"),
    ),
    (
        Spec("start_all", "Start all", "start-all", "Start the master and every local worker"),
        Spec("stop_all", "Stop all", "stop-all", "Stop everything ComfyFleet started"),
    ),
    (Spec("tunnel", "Tunnel", "tunnel", "Start or stop a cloudflared tunnel (arrow: which)"),),
    (
        Spec("jobs", "Jobs…", "jobs", "Run a workflow across the fleet"),
        Spec("test_fleet", "Test fleet", "test", "Prove that every worker delivers to the master"),
    ),
    (
        Spec("check_now", "Check now", "refresh", "Probe every instance now"),
        Spec("gpus", "GPUs", "gpu", "Show or fold the GPU panel"),
        Spec("settings", "Settings…", "settings", "Start at login, tray, notifications, theme"),
    ),
)
MASTER = Spec("master", "Master…", "folder", "Where the master runs: folder, Python, address, port")
NEEDS_ROW = frozenset({"edit", "remove", "start", "stop", "restart", "logs"})
NEEDS_LAUNCHABLE = frozenset({"start", "stop", "restart"})
NEEDS_WORKER = frozenset({"remove"})


class FleetToolbar(QToolBar):
    def __init__(self, parent: QWidget, simulation: bool) -> None:
        super().__init__("Fleet", parent)
        self.setObjectName("fleetToolbar")
        self.setMovable(False)
        self.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.actions_by_key: dict[str, QAction] = {}
        self._specs: dict[str, Spec] = {}
        groups = GROUPS if simulation else ((MASTER,), *GROUPS)
        for number, group in enumerate(groups):
            if number:
                self.addSeparator()
            for spec in group:
                action = QAction(spec.text, parent)
                action.setObjectName(spec.key)
                action.setToolTip(spec.tip)
                self.addAction(action)
                self.actions_by_key[spec.key] = action
                self._specs[spec.key] = spec
                button = self.widgetForAction(action)
                if button is not None:  # (a toolbar's buttons take no focus unless told)
                    button.setFocusPolicy(Qt.FocusPolicy.TabFocus)
        self.recolor()

    def handle(self, handlers: dict[str, Callable[[], None]]) -> None:
        for key, handler in handlers.items():
            self.actions_by_key[key].triggered.connect(handler)

    def recolor(self) -> None:
        """Icons drawn in the palette's text colour: called again when the scheme changes."""
        color = self.palette().color(QPalette.ColorRole.ButtonText)
        for key, action in self.actions_by_key.items():
            action.setIcon(action_icon(self._specs[key].icon, color))

    def use_menu(self, key: str, menu: object) -> None:
        action = self.actions_by_key[key]
        action.setMenu(menu)  # type: ignore[arg-type]
        button = self.widgetForAction(action)
        if isinstance(button, QToolButton):
            button.setPopupMode(QToolButton.ToolButtonPopupMode.MenuButtonPopup)

    def follow_selection(
        self, name: str | None, launchable: bool, is_worker: bool, editable: bool
    ) -> None:
        """Enable what the selected row allows; a disabled action says why in its tooltip."""
        for key in NEEDS_ROW:
            action, spec = self.actions_by_key[key], self._specs[key]
            why = ""
            if name is None:
                why = "select an instance in the table first"
            elif key in NEEDS_LAUNCHABLE and not launchable:
                why = f"{name} runs elsewhere: ComfyFleet starts only the master and local workers"
            elif key in NEEDS_WORKER and not is_worker:
                why = "the master stays: change it with 'Master…'"
            elif key == "edit" and not editable:
                why = "the demo's master is the simulator's"
            action.setEnabled(not why)
            action.setToolTip(f"{spec.tip} — {why}" if why else spec.tip)
