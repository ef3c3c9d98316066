"""One app per user and config: a second launch activates the first window and exits."""

from __future__ import annotations

import getpass
import hashlib
from collections.abc import Callable
from pathlib import Path

from PySide6.QtNetwork import QLocalServer, QLocalSocket

from app import APP_ID

ACTIVATE = b"activate\n"


def instance_key(config_file: Path) -> str:
    digest = hashlib.sha256(str(config_file).encode()).hexdigest()[:12]
    return f"{APP_ID}-{getpass.getuser()}-{digest}"


def activate_running(key: str, timeout_ms: int = 500) -> bool:
    """Ask a running instance to show itself; True when one answered."""
    socket = QLocalSocket()
    socket.connectToServer(key)
    if not socket.waitForConnected(timeout_ms):
        return False
    socket.write(ACTIVATE)
    socket.waitForBytesWritten(timeout_ms)
    socket.disconnectFromServer()
    return True


class InstanceServer:
    """Listens for later launches and calls `on_activate` when one arrives."""

    def __init__(self, key: str, on_activate: Callable[[], None]) -> None:
        self._on_activate = on_activate
        self.server = QLocalServer()
        self.server.setSocketOptions(QLocalServer.SocketOption.UserAccessOption)
        if not self.server.listen(key):
            QLocalServer.removeServer(key)  # a stale socket left by a crashed instance
            self.server.listen(key)
        self.server.newConnection.connect(self._accept)

    def _accept(self) -> None:
        while (socket := self.server.nextPendingConnection()) is not None:
            socket.readyRead.connect(lambda s=socket: self._read(s))
            socket.disconnected.connect(socket.deleteLater)

    def _read(self, socket: QLocalSocket) -> None:
        if bytes(socket.readAll().data()).startswith(ACTIVATE.strip()):
            self._on_activate()

    def close(self) -> None:
        self.server.close()
