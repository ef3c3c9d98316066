"""Add a named cloudflared tunnel: its public hostname in the config, its token in the keyring."""

from __future__ import annotations

import dataclasses

from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QWidget,
)

from app.core.config import FleetConfig, NamedTunnel, validate_config
from app.core.errors import ComfyFleetError
from app.core.tunnel import token_key
from app.services.secrets import SecretStore


class NamedTunnelDialog(QDialog):
    def __init__(self, config: FleetConfig, secrets: SecretStore, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Add named tunnel")
        self._config = config
        self._secrets = secrets
        self.result_config: FleetConfig | None = None
        self.name = QLineEdit()
        self.hostname = QLineEdit()
        self.hostname.setPlaceholderText("comfy.example.com (set up in Cloudflare Zero Trust)")
        self.token = QLineEdit()
        self.token.setEchoMode(QLineEdit.EchoMode.Password)
        self.token.setPlaceholderText("the tunnel's token: stored in the system keyring only")
        self.error = QLabel()
        self.error.setStyleSheet("color: #b3261e")
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.accepted.connect(self.save)
        buttons.rejected.connect(self.reject)
        form = QFormLayout(self)
        form.addRow("Name", self.name)
        form.addRow("Public hostname", self.hostname)
        form.addRow("Token", self.token)
        form.addRow(self.error)
        form.addRow(buttons)

    def save(self) -> None:
        name, hostname, token = (
            self.name.text().strip(),
            self.hostname.text().strip(),
            self.token.text().strip(),
        )
        if not name or not token:
            self.error.setText("A named tunnel needs a name and its token.")
            return
        named = (
            *[t for t in self._config.tunnel.named if t.name != name],
            NamedTunnel(name, hostname),
        )
        config = dataclasses.replace(
            self._config, tunnel=dataclasses.replace(self._config.tunnel, named=named)
        )
        try:
            validate_config(config)
            self._secrets.set(token_key(name), token)
        except ComfyFleetError as exc:
            self.error.setText(str(exc))
            return
        self.result_config = config
        self.accept()
