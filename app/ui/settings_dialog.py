"""Desktop integration: start at login, start the fleet, minimise to tray, notifications."""

from __future__ import annotations

import dataclasses

from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QGroupBox,
    QLabel,
    QVBoxLayout,
    QWidget,
)

from app.core.config import THEMES, AppSettings, Notice

THEME_LABELS = {"system": "As the desktop (light or dark)", "light": "Light", "dark": "Dark"}
NOTICE_LABELS = {
    Notice.CRASH: "An instance crashed",
    Notice.RESTART: "An instance is back after a restart",
    Notice.TUNNEL_READY: "A tunnel is ready (its URL is copied)",
    Notice.RUN_FINISHED: "A distributed run finished",
}


class SettingsDialog(QDialog):
    def __init__(
        self,
        settings: AppSettings,
        autostart_at: str,
        has_tray: bool,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self.setMinimumWidth(480)
        self._settings = settings
        self.start_at_login = QCheckBox("Start ComfyFleet when I log in")
        self.start_at_login.setChecked(settings.start_at_login)
        self.start_at_login.setToolTip(autostart_at)
        self.start_fleet = QCheckBox("Start the master and local workers when ComfyFleet starts")
        self.start_fleet.setChecked(settings.start_fleet_on_launch)
        self.minimize_to_tray = QCheckBox("Closing the window keeps ComfyFleet in the tray")
        self.minimize_to_tray.setChecked(settings.minimize_to_tray and has_tray)
        self.minimize_to_tray.setEnabled(has_tray)
        if not has_tray:
            self.minimize_to_tray.setToolTip("This desktop shows no tray: closing the window quits")
        self.theme = QComboBox()
        for theme in THEMES:
            self.theme.addItem(THEME_LABELS[theme], theme)
        self.theme.setCurrentIndex(THEMES.index(settings.theme))
        self.notices = {n: QCheckBox(label) for n, label in NOTICE_LABELS.items()}
        group = QGroupBox("Notify me when")
        group_layout = QVBoxLayout(group)
        for notice, box in self.notices.items():
            box.setChecked(settings.notifies(notice))
            group_layout.addWidget(box)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        for widget in (self.start_at_login, self.start_fleet, self.minimize_to_tray, group):
            layout.addWidget(widget)
        look = QFormLayout()
        look.addRow("Appearance", self.theme)
        layout.addLayout(look)
        where = QLabel(f"<small>Start at login writes {autostart_at}</small>")
        where.setWordWrap(True)
        layout.addWidget(where)
        layout.addWidget(buttons)

    def result_settings(self) -> AppSettings:
        notices = {f"notify_{n.value}": box.isChecked() for n, box in self.notices.items()}
        box = self.minimize_to_tray  # without a tray the stored choice is kept for later
        minimize = box.isChecked() if box.isEnabled() else self._settings.minimize_to_tray
        return dataclasses.replace(
            self._settings,
            start_at_login=self.start_at_login.isChecked(),
            start_fleet_on_launch=self.start_fleet.isChecked(),
            minimize_to_tray=minimize,
            theme=str(self.theme.currentData()),
            **notices,
        )
