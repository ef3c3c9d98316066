"""The system tray launcher; its menu is rebuilt from live state each time it opens."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QMenu, QSystemTrayIcon, QWidget

from app import APP_NAME


class FleetTray(QSystemTrayIcon):
    def __init__(self, icon: QIcon, window: QWidget, quit_app: Callable[[], None]) -> None:
        super().__init__(icon)
        self._window = window
        self._quit_app = quit_app
        self.setToolTip(APP_NAME)
        self.menu = QMenu()
        self.menu.aboutToShow.connect(self._rebuild_menu)
        self.setContextMenu(self.menu)
        self.activated.connect(self._on_activated)
        self._rebuild_menu()

    def _rebuild_menu(self) -> None:
        self.menu.clear()
        label = "Hide ComfyFleet" if self._window.isVisible() else "Show ComfyFleet"
        self.menu.addAction(label, self._toggle_window)
        self.menu.addSeparator()
        self.menu.addAction("Quit", self._quit_app)

    def _toggle_window(self) -> None:
        toggle = getattr(self._window, "toggle_visible", None)
        if callable(toggle):
            toggle()

    def _on_activated(self, reason: QSystemTrayIcon.ActivationReason) -> None:
        if reason == QSystemTrayIcon.ActivationReason.Trigger:
            self._toggle_window()
