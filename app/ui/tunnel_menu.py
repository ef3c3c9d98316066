"""The Tunnel button's drop-down: a quick tunnel, each named tunnel, adding one."""

from __future__ import annotations

import functools
from collections.abc import Callable

from PySide6.QtWidgets import QMenu, QWidget

from app.core.config import FleetConfig
from app.ui.fleet_control import FleetControl
from app.ui.named_tunnel_dialog import NamedTunnelDialog


class TunnelMenu(QMenu):
    def __init__(
        self,
        control: FleetControl,
        config: Callable[[], FleetConfig],
        apply_config: Callable[[FleetConfig], bool],
        parent: QWidget,
    ) -> None:
        super().__init__(parent)
        self._control = control
        self._config = config
        self._apply_config = apply_config
        self.aboutToShow.connect(self.refill)  # rebuilt from live state each time

    def refill(self) -> None:
        self.clear()
        running = self._control.tunnel_running()
        quick = self.addAction("Quick tunnel (a random trycloudflare.com address)")
        quick.triggered.connect(lambda: self._control.start_tunnel("quick"))
        for named in self._config().tunnel.named:
            action = self.addAction(f"{named.name} — https://{named.hostname}")
            action.triggered.connect(functools.partial(self._control.start_tunnel, named.name))
        for action in self.actions():
            action.setEnabled(not running)
        self.addSeparator()
        self.addAction("Add named tunnel…").triggered.connect(self.add_named)

    def add_named(self) -> None:
        dialog = NamedTunnelDialog(self._config(), self._control.secrets, self.parentWidget())
        if dialog.exec() and dialog.result_config is not None:
            self._apply_config(dialog.result_config)
