"""The GPU panel shows each GPU's utilisation, temperature and power, and its charts wrap to
the dock's width: one column in a narrow dock (no horizontal scrolling), four in a wide one."""

from __future__ import annotations

import dataclasses

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QScrollArea
from pytestqt.qtbot import QtBot

from app.services.gpus import GpuSnapshot
from app.ui.gpu_panel import GpuPanel, WrapGrid
from tests.ui.test_gpu_picker import GPUS


def test_the_charts_wrap_to_the_width_and_the_title_says_the_readings(
    qapp: QApplication, qtbot: QtBot
) -> None:
    panel = GpuPanel()
    scroll = QScrollArea()  # as the dock holds it
    scroll.setWidgetResizable(True)
    scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    scroll.setWidget(panel)
    qtbot.addWidget(scroll)
    busy = [dataclasses.replace(g, utilization=97, temperature=71, power_w=402.4) for g in GPUS]
    panel.add_gpu_snapshot(GpuSnapshot(tuple(busy)))
    assert [label.text() for label in panel.gpu_titles.values()] == [
        "<b>GPU 0</b> NVIDIA GeForce RTX 4090 · 97% · 71 °C · 402/450 W",
        "<b>GPU 1</b> NVIDIA GeForce RTX 3090 · 97% · 71 °C · 402/450 W",
    ]
    vram, util, temp, power = panel.gpu_charts[GPUS[0].uuid]
    assert power.maximum == 450 and power.values == (402.4,) and temp.values == (71.0,)
    grids = panel.findChildren(WrapGrid)
    scroll.resize(220, 600)
    scroll.show()
    qtbot.waitExposed(scroll)
    qtbot.waitUntil(lambda: all(g.columns == 1 for g in grids if g.cells))
    qtbot.waitUntil(lambda: vram.y() < util.y() < temp.y() < power.y())
    assert panel.width() <= scroll.viewport().width()  # nothing hidden to the right
    assert all(c.geometry().right() <= panel.width() for c in (vram, util, temp, power))
    scroll.resize(720, 600)
    qtbot.waitUntil(lambda: all(g.columns == 4 for g in grids if g.cells))
    qtbot.waitUntil(lambda: vram.y() == power.y())  # (once the layout is applied)
    assert vram.x() < util.x() < temp.x() < power.x()
    unknown = dataclasses.replace(GPUS[0], temperature=None, power_w=None, power_limit_w=None)
    panel.add_gpu_snapshot(GpuSnapshot((unknown,)))
    assert panel.gpu_titles[GPUS[0].uuid].text() == "<b>GPU 0</b> NVIDIA GeForce RTX 4090 · 0%"
