"""A run's thumbnails never overlap: laid out in cells of one size whether their images came
before or after the labels (6 participants, images arriving one by one)."""

from __future__ import annotations

import itertools

from PySide6.QtCore import QBuffer, QByteArray, QIODevice
from PySide6.QtGui import QColor, QImage
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from app.core.runs import ImageRef, Output
from app.ui.gallery import Gallery


def png(width: int, height: int) -> bytes:
    image = QImage(width, height, QImage.Format.Format_RGB32)
    image.fill(QColor("#808080"))
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    image.save(buffer, "PNG")
    return bytes(data.data())


async def never(output: Output) -> bytes:
    raise AssertionError("not fetched here")


def test_six_participants_thumbnails_do_not_overlap(qapp: QApplication, qtbot: QtBot) -> None:
    gallery = Gallery(never)
    qtbot.addWidget(gallery)
    gallery.resize(900, 600)
    gallery.show()
    qtbot.waitExposed(gallery)
    names = ["master", "gpu1-4090", "lan-3090 (slow)", "pod-a100 (flaky)", "gpu2", "pod-h200"]
    outputs = tuple(
        Output(ImageRef(f"img_{n:05}_.png", "", "output"), name, 1000 + n)
        for n, name in enumerate(names)
    )
    gallery.show_outputs(outputs)
    QApplication.processEvents()  # laid out with labels only, as a run shows them first
    for number, size in enumerate([(512, 512), (1024, 768), (768, 1024)] * 2):
        gallery.set_image(number, png(*size))
        QApplication.processEvents()
    rects = [gallery.visualItemRect(gallery.item(n)) for n in range(gallery.count())]
    assert all(r.width() > 0 and r.height() > 0 for r in rects)
    for a, b in itertools.combinations(rects, 2):
        assert not a.intersects(b), f"{a} overlaps {b}"
    assert all(r.height() >= 120 for r in rects), rects  # the thumbnails (160×120 at least)
