"""The Tunnel button's drop-down: a quick tunnel, each named tunnel, a tunnel for a local
worker, pointing at an existing cloudflared, adding a named tunnel."""

from __future__ import annotations

import functools

from PySide6.QtWidgets import QMenu, QWidget

from app.services.tasks import OwnedTasks
from app.ui.ask import answer_of, choose_path, tell
from app.ui.config_keeper import ConfigKeeper
from app.ui.named_tunnel_dialog import NamedTunnelDialog
from app.ui.tunnel_control import TunnelControl


class TunnelMenu(QMenu):
    def __init__(self, tunnels: TunnelControl, keeper: ConfigKeeper, parent: QWidget) -> None:
        super().__init__(parent)
        self.setObjectName("tunnelMenu")
        self._tunnels = tunnels
        self._keeper = keeper
        self._tasks = OwnedTasks(lambda what, exc: self._failed(f"{what} failed: {exc}"))
        self.aboutToShow.connect(self.refill)  # rebuilt from live state each time

    def _failed(self, text: str) -> None:
        tell(self.parentWidget(), text)

    def refill(self) -> None:
        self.clear()
        tunnels = self._tunnels
        running = tunnels.running()
        quick = self.addAction("Quick tunnel for the master (a random trycloudflare.com address)")
        quick.triggered.connect(lambda: tunnels.start("quick"))
        quick.setEnabled(not running)
        for named in self._keeper.config.tunnel.named:
            action = self.addAction(f"{named.name} — https://{named.hostname}")
            action.triggered.connect(functools.partial(tunnels.start, named.name))
            action.setEnabled(not running)
        workers = self.addMenu("Tunnel a local worker")
        workers.setObjectName("tunnelWorkers")
        for name in tunnels.local_workers():
            if tunnels.running(name):
                action = workers.addAction(f"Stop the tunnel for {name}")
                action.triggered.connect(functools.partial(tunnels.stop, name))
            else:
                action = workers.addAction(name)
                action.triggered.connect(functools.partial(tunnels.start, "quick", name))
        workers.setEnabled(bool(tunnels.local_workers()))
        self.addSeparator()
        self.addAction("Use an existing cloudflared…").triggered.connect(self.browse)
        self.addAction("Add named tunnel…").triggered.connect(self.add_named)

    def browse(self) -> None:
        self._tasks.spawn(self._browse(), "choosing cloudflared")

    async def _browse(self) -> None:
        path = await choose_path(self.parentWidget(), "Choose the cloudflared program")
        if path is not None:
            self._tunnels.use_cloudflared(path)

    def add_named(self) -> None:
        self._tasks.spawn(self._add_named(), "adding a named tunnel")

    async def _add_named(self) -> None:
        dialog = NamedTunnelDialog(self._keeper.config, self._tunnels.secrets, self.parentWidget())
        try:
            if await answer_of(dialog) and dialog.result_config is not None:
                self._keeper.apply(dialog.result_config)
        finally:
            dialog.deleteLater()
