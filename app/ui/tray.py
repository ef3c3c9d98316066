"""The system tray launcher: fleet health at a glance; the menu is rebuilt each time it opens."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from enum import StrEnum

from PySide6.QtGui import QColor, QGuiApplication
from PySide6.QtWidgets import QMenu, QSystemTrayIcon, QWidget

from app import APP_NAME
from app.core.health import WorkerHealth, WorkerState
from app.core.tunnel import TunnelState
from app.ui.browser import open_in_browser
from app.ui.fleet_control import FleetControl
from app.ui.icons import status_icon
from app.ui.summary import workers_online
from app.ui.tunnel_control import TunnelControl

UP = (WorkerState.ONLINE, WorkerState.BUSY)


class FleetHealth(StrEnum):
    GOOD = "all good"
    DEGRADED = "some down"
    ERROR = "error"
    UNKNOWN = "checking"


COLORS = {
    FleetHealth.GOOD: "#34a853",
    FleetHealth.DEGRADED: "#f9ab00",
    FleetHealth.ERROR: "#d93025",
    FleetHealth.UNKNOWN: "#9aa0a6",
}


def fleet_health(healths: Iterable[WorkerHealth]) -> tuple[FleetHealth, str]:
    """Error when the master or every instance is down; degraded when some are. The summary
    counts workers (the master is said apart when it is down)."""
    every = list(healths)
    enabled = [h for h in every if h.state is not WorkerState.DISABLED]
    if not enabled:
        return FleetHealth.UNKNOWN, "no workers"
    online = sum(h.state in UP for h in enabled)
    summary = workers_online(every)
    if all(h.state is WorkerState.STARTING for h in enabled):
        return FleetHealth.UNKNOWN, "checking the fleet…"
    master = next((h for h in enabled if h.kind == "master"), None)
    if master is not None and master.state not in UP:
        return FleetHealth.ERROR, f"master {master.state.value}; {summary}"
    if online == 0:
        return FleetHealth.ERROR, summary
    return (FleetHealth.GOOD if online == len(enabled) else FleetHealth.DEGRADED), summary


class FleetTray(QSystemTrayIcon):
    def __init__(
        self,
        window: QWidget,
        quit_app: Callable[[], None],
        control: FleetControl | None = None,
        tunnels: TunnelControl | None = None,
        master_url: Callable[[], str] = lambda: "",
    ) -> None:
        super().__init__(status_icon(QColor(COLORS[FleetHealth.UNKNOWN])))
        self._window = window
        self._quit_app = quit_app
        self._control = control
        self._tunnels = tunnels
        self._master_url = master_url
        self.health = FleetHealth.UNKNOWN
        self.summary = ""
        self.queued = 0  # items waiting or out in the fleet queue
        self.cloud = ""  # what the pods billing now cost, in words
        self.setToolTip(APP_NAME)
        self.menu = QMenu()
        self.menu.aboutToShow.connect(self._rebuild_menu)
        self.setContextMenu(self.menu)
        self.activated.connect(self._on_activated)
        self._rebuild_menu()

    def show_health(self, healths: Iterable[WorkerHealth]) -> None:
        health, self.summary = fleet_health(healths)
        self._tooltip()
        if health is not self.health:
            self.health = health
            self.setIcon(status_icon(QColor(COLORS[health])))

    def show_queued(self, count: int) -> None:
        self.queued = count
        self._tooltip()

    def show_cloud(self, cost: str) -> None:
        """What the pods cost now ("2 pods $1.38/h"), or "" without pods billing."""
        self.cloud = cost
        self._tooltip()

    def _tooltip(self) -> None:
        queued = f" · {self.queued} queued" if self.queued else ""
        cloud = f" · {self.cloud}" if self.cloud else ""
        self.setToolTip(f"{APP_NAME}: {self.summary or 'starting'}{queued}{cloud}")

    def _rebuild_menu(self) -> None:
        self.menu.clear()
        if self.queued:
            self.menu.addAction(f"{self.queued} queued").setEnabled(False)
        if self.cloud:
            self.menu.addAction(f"Cloud: {self.cloud}").setEnabled(False)
        label = "Hide ComfyFleet" if self._window.isVisible() else "Show ComfyFleet"
        self.menu.addAction(label, self._toggle_window)
        url = self._master_url()
        if url:
            self.menu.addAction("Open ComfyUI in browser", lambda: open_in_browser(url))
        self.menu.addSeparator()
        if self._control is not None:
            self.menu.addAction("Start all", self._control.start_all)
            self.menu.addAction("Stop all", self._control.stop_all)
        if self._tunnels is not None:
            tunnel = self._tunnels.master.status
            running = self._tunnels.running()
            self.menu.addAction("Stop tunnel" if running else "Start tunnel", self._tunnels.toggle)
            if tunnel.state is TunnelState.READY and tunnel.url:
                url = tunnel.url
                self.menu.addAction(
                    "Copy tunnel URL", lambda: QGuiApplication.clipboard().setText(url)
                )
            self.menu.addSeparator()
        self.menu.addAction("Quit", self._quit_app)

    def _toggle_window(self) -> None:
        toggle = getattr(self._window, "toggle_visible", None)
        if callable(toggle):
            toggle()

    def _on_activated(self, reason: QSystemTrayIcon.ActivationReason) -> None:
        if reason == QSystemTrayIcon.ActivationReason.Trigger:
            self._toggle_window()
