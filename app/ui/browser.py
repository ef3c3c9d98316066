"""Opening an instance's ComfyUI page in the user's browser."""

from __future__ import annotations

from PySide6.QtCore import QUrl
from PySide6.QtGui import QDesktopServices


def open_in_browser(url: str) -> bool:
    """The page at `url` (http for a local or LAN instance, https for a cloud one or a tunnel);
    False where no browser took it."""
    return bool(url) and QDesktopServices.openUrl(QUrl(url))
