"""Desktop integration: start at login, start the fleet, minimise to tray, notifications."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QLabel,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from app.core.cloud import CloudSettings
from app.core.config import THEMES, AppSettings, Notice

THEME_LABELS = {"system": "As the desktop (light or dark)", "light": "Light", "dark": "Dark"}
NOTICE_LABELS = {
    Notice.CRASH: "An instance crashed",
    Notice.RESTART: "An instance is back after a restart",
    Notice.TUNNEL_READY: "A tunnel is ready (its URL is copied)",
    Notice.RUN_FINISHED: "A distributed run finished",
    Notice.WORKER_DOWN: "A remote or cloud worker went down (or flaps: said once)",
    Notice.WORKER_UP: "A remote or cloud worker is back",
}


class SettingsDialog(QDialog):
    def __init__(
        self,
        settings: AppSettings,
        autostart_at: str,
        has_tray: bool,
        parent: QWidget | None = None,
        cloud: CloudSettings | None = None,
        on_key: Callable[[], None] | None = None,
    ) -> None:
        """`cloud`: the Runpod guards shown and set here; `on_key`: asks for the API key."""
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self.setMinimumWidth(480)
        self._settings = settings
        self._cloud = cloud or CloudSettings()
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
        cloud_box = self._cloud_group(self._cloud, on_key)
        layout = QVBoxLayout(self)
        for widget in (self.start_at_login, self.start_fleet, self.minimize_to_tray, group):
            layout.addWidget(widget)
        layout.addWidget(cloud_box)
        look = QFormLayout()
        look.addRow("Appearance", self.theme)
        layout.addLayout(look)
        where = QLabel(f"<small>Start at login writes {autostart_at}</small>")
        where.setWordWrap(True)
        layout.addWidget(where)
        layout.addWidget(buttons)

    def _cloud_group(self, cloud: CloudSettings, on_key: Callable[[], None] | None) -> QGroupBox:
        box = QGroupBox("Cloud (Runpod)")
        form = QFormLayout(box)
        key = QPushButton("Runpod API key…")
        key.setEnabled(on_key is not None)
        if on_key is not None:
            key.clicked.connect(on_key)
        self.idle_minutes = _spin(cloud.idle_stop_min, 0, 24 * 60, " min", 0)
        self.idle_minutes.setSpecialValueText("never")
        self.daily_budget = _spin(cloud.daily_budget_usd, 0, 100_000, "", 2)
        self.daily_budget.setPrefix("$")
        self.daily_budget.setSpecialValueText("no limit")
        self.elastic = QCheckBox("Start or rent pods while the queue waits longer than")
        self.elastic.setChecked(cloud.elastic)
        self.elastic_wait = _spin(cloud.elastic_wait_min, 1, 24 * 60, " min", 0)
        self.elastic_max = QSpinBox()
        self.elastic_max.setRange(1, 32)
        self.elastic_max.setValue(cloud.elastic_max_pods)
        form.addRow("Account", key)
        form.addRow("Stop a pod idle for", self.idle_minutes)
        form.addRow("Daily budget", self.daily_budget)
        form.addRow(self.elastic, self.elastic_wait)
        form.addRow("Pods billing at once, at most", self.elastic_max)
        return box

    def result_cloud(self) -> CloudSettings:
        return dataclasses.replace(
            self._cloud,
            idle_stop_min=self.idle_minutes.value(),
            daily_budget_usd=self.daily_budget.value(),
            elastic=self.elastic.isChecked(),
            elastic_wait_min=self.elastic_wait.value(),
            elastic_max_pods=self.elastic_max.value(),
        )

    def result_settings(self) -> AppSettings:
        notices: dict[str, Any] = {
            f"notify_{n.value}": box.isChecked() for n, box in self.notices.items()
        }
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


def _spin(value: float, low: float, high: float, suffix: str, decimals: int) -> QDoubleSpinBox:
    spin = QDoubleSpinBox()
    spin.setRange(low, high)
    spin.setDecimals(decimals)
    spin.setSuffix(suffix)
    spin.setValue(value)
    return spin
