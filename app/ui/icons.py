"""Icons: the SVGs in resources/, with a drawn fallback so the app never shows a blank icon."""

from __future__ import annotations

import sys
from pathlib import Path

from PySide6.QtCore import QByteArray, Qt
from PySide6.QtGui import QColor, QIcon, QPainter, QPixmap
from PySide6.QtSvg import QSvgRenderer


def resources_dir() -> Path:
    bundled = getattr(sys, "_MEIPASS", None)  # PyInstaller
    if bundled:
        return Path(bundled) / "resources"
    return Path(__file__).resolve().parents[2] / "resources"


def app_icon() -> QIcon:
    svg = resources_dir() / "icons" / "comfy-fleet.svg"
    icon = QIcon(str(svg)) if svg.is_file() else QIcon()
    return icon if not icon.isNull() else status_icon(QColor("#5ab0ff"))


def status_icon(color: QColor, size: int = 64) -> QIcon:
    pixmap = QPixmap(size, size)
    pixmap.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pixmap)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setBrush(color)
    painter.setPen(Qt.PenStyle.NoPen)
    painter.drawEllipse(4, 4, size - 8, size - 8)
    painter.end()
    return QIcon(pixmap)


def action_icon(name: str, color: QColor, size: int = 48) -> QIcon:
    """A toolbar icon (resources/icons/actions/NAME.svg) drawn in `color` (the palette's text
    colour: the icons follow a light or dark scheme); an empty icon if the file is missing."""
    path = resources_dir() / "icons" / "actions" / f"{name}.svg"
    try:
        svg = path.read_text(encoding="utf-8").replace("currentColor", color.name())
    except OSError:
        return QIcon()
    renderer = QSvgRenderer(QByteArray(svg.encode("utf-8")))
    pixmap = QPixmap(size, size)
    pixmap.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pixmap)
    renderer.render(painter)
    painter.end()
    return QIcon(pixmap)
