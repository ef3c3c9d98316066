"""The preflight dialog says what to do about each failing participant, and copies it."""

from __future__ import annotations

from PySide6.QtGui import QGuiApplication, QKeySequence
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from app.core.config import FleetConfig, MasterConfig, WorkerConfig, WorkerKind
from app.core.preflight_advice import LOCAL_UNREACHABLE, preflight_advice, where_it_runs
from app.core.workflow import PreflightResult
from app.ui.preflight_dialog import PreflightDialog

CONFIG = FleetConfig(
    master=MasterConfig(comfyui_dir="/opt/ComfyUI"),
    workers=(
        WorkerConfig("gpu1", WorkerKind.LOCAL, port=8189),
        WorkerConfig("lan-box", WorkerKind.REMOTE, host="127.0.0.20"),
    ),
)
REFUSED = "could not ask it: connection refused"


def test_each_row_says_what_to_do_and_copies(qapp: QApplication, qtbot: QtBot) -> None:
    checks = [
        PreflightResult("master"),
        PreflightResult("gpu1", error=REFUSED),
        PreflightResult("lan-box", error=REFUSED),
    ]
    states = {"gpu1": "restarting"}  # ComfyFleet is restarting it after a crash

    def advice(check: PreflightResult) -> str:
        where = where_it_runs(CONFIG, check.participant)
        return preflight_advice(check, where, states.get(check.participant))

    dialog = PreflightDialog(checks, advice=advice)
    qtbot.addWidget(dialog)
    table = dialog.table
    assert table.headerItem().text(2) == "What to do"
    rows = [table.topLevelItem(i) for i in range(table.topLevelItemCount())]
    assert rows[0].text(2) == ""  # ready
    assert rows[1].text(2) == LOCAL_UNREACHABLE["restarting"]  # local: ComfyFleet's own
    assert "on that machine with --listen" in rows[2].text(2)  # remote: another machine's
    expected = f"gpu1: ✘ {REFUSED}\nWhat to do: {LOCAL_UNREACHABLE['restarting']}"
    assert table.currentItem() is rows[1]  # the first failing one, said in full below
    assert dialog.details.text() == expected
    dialog.show()
    qtbot.waitExposed(dialog)
    table.setFocus()
    QTest.keySequence(table, QKeySequence(QKeySequence.StandardKey.Copy))
    assert QGuiApplication.clipboard().text() == expected
