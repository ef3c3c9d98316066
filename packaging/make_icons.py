"""Render resources/icons/comfy-fleet.svg into the PNG sizes desktops and installers use.

python packaging/make_icons.py        (writes resources/icons/hicolor/NxN/apps/comfy-fleet.png
                                       and resources/icons/comfy-fleet.ico)
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication, QImage, QPainter
from PySide6.QtSvg import QSvgRenderer

ROOT = Path(__file__).resolve().parents[1]
ICONS = ROOT / "resources" / "icons"
SIZES = (16, 24, 32, 48, 64, 128, 256, 512)
ICO_SIZES = (16, 24, 32, 48, 64, 128, 256)


def render(renderer: QSvgRenderer, size: int) -> QImage:
    image = QImage(size, size, QImage.Format.Format_ARGB32)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    renderer.render(painter)
    painter.end()
    return image


def main() -> int:
    QGuiApplication(sys.argv[:1])
    renderer = QSvgRenderer(str(ICONS / "comfy-fleet.svg"))
    if not renderer.isValid():
        print("cannot read comfy-fleet.svg", file=sys.stderr)
        return 1
    for size in SIZES:
        target = ICONS / "hicolor" / f"{size}x{size}" / "apps" / "comfy-fleet.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        render(renderer, size).save(str(target))
        print(target.relative_to(ROOT))
    from PIL import Image  # Pillow writes the multi-size .ico the Windows installer uses

    biggest = ICONS / "hicolor" / "256x256" / "apps" / "comfy-fleet.png"
    with Image.open(biggest) as image:
        image.save(ICONS / "comfy-fleet.ico", sizes=[(s, s) for s in ICO_SIZES])
    print((ICONS / "comfy-fleet.ico").relative_to(ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
