"""systemd's notify protocol (sd_notify): READY=1 once the service works, WATCHDOG=1 while it
does, STOPPING=1 on the way out, STATUS= in words; nothing when not run by systemd."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping


class Notifier:
    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        environ = os.environ if environ is None else environ
        address = environ.get("NOTIFY_SOCKET", "")
        self.address = "\0" + address[1:] if address.startswith("@") else address
        pid = environ.get("WATCHDOG_PID")
        usec = environ.get("WATCHDOG_USEC", "")
        mine = pid is None or pid == str(os.getpid())
        # pinged at half the interval, as systemd advises
        self.watchdog_s = int(usec) / 2e6 if usec.isdigit() and int(usec) and mine else None

    def notify(self, *fields: str) -> bool:
        """Send `fields` (e.g. "READY=1", "STATUS=…"); False when there is nobody to tell."""
        if not self.address:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto("\n".join(fields).encode(), self.address)
        except OSError:  # (systemd gone: the service goes on)
            return False
        return True
