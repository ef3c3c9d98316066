"""This process in words, for other desktops of a team: who queues, who dispatches."""

from __future__ import annotations

import getpass
import os
import socket


def user_at_host() -> str:
    """user@host: shown beside a job on every desktop that shares the queue."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # (no name for this uid, e.g. in a container)
        user = f"uid {os.getuid()}" if hasattr(os, "getuid") else "someone"
    return f"{user}@{socket.gethostname()}"


def here() -> str:
    """This process: user@host and its pid."""
    return f"{user_at_host()} (pid {os.getpid()})"
