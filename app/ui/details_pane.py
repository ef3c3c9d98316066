"""The selected instance in full: its state and the whole reason, what to do, its recent VRAM
and latency, and the end of its log."""

from __future__ import annotations

import html
import time
from collections.abc import Callable

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QFont
from PySide6.QtWidgets import (
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.ui.history import Chart, FleetHistory
from app.ui.row_text import FleetRow, ago, device, is_stale, latency, process, queue, standing, vram
from app.ui.worker_table import STATE_COLORS

LOG_TAIL = 12


class DetailsPane(QWidget):
    def __init__(
        self,
        history: FleetHistory,
        log_lines: Callable[[str], list[str]],
        log_state: Callable[[str], str] = lambda name: "",
    ) -> None:
        super().__init__()
        self.setObjectName("detailsPane")
        self._history = history
        self._log_lines = log_lines
        self._log_state = log_state
        self.row: FleetRow | None = None
        self.title = QLabel()
        self.title.setTextFormat(Qt.TextFormat.RichText)
        self.title.setWordWrap(True)
        self.state = QLabel()
        self.state.setTextFormat(Qt.TextFormat.RichText)
        self.state.setWordWrap(True)
        self.state.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.remedy = QLabel()
        self.remedy.setWordWrap(True)
        self.remedy.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.open_button = QToolButton()
        self.open_button.setObjectName("openInBrowser")
        self.facts = {
            name: QLabel() for name in ("Device", "Process", "VRAM", "Queue", "Latency", "Uptime")
        }
        self.vram_chart = Chart("VRAM used", "%", 100, "#8430ce")
        self.latency_chart = Chart("Latency", " ms", 100, "#1a73e8")
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setObjectName("logTail")
        self.log.setFont(QFont("monospace"))
        self.log.setMaximumBlockCount(LOG_TAIL * 4)
        self.log.setMinimumWidth(120)
        facts = QGridLayout()  # the device on a row of its own (a long name), then two facts
        facts.setHorizontalSpacing(8)  # a row: the pane stays short on a small screen
        for number, (name, label) in enumerate(self.facts.items()):
            label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            label.setWordWrap(True)
            row, pair = divmod(number + 1, 2) if number else (0, 0)
            caption = QLabel(name)
            caption.setObjectName("factName")
            facts.addWidget(caption, row, pair * 2, Qt.AlignmentFlag.AlignTop)
            span = 3 if number == 0 else 1
            facts.addWidget(label, row, pair * 2 + 1, 1, span, Qt.AlignmentFlag.AlignTop)
        facts.setColumnStretch(1, 1)
        facts.setColumnStretch(3, 1)
        left = QVBoxLayout()
        heading = QHBoxLayout()
        heading.addWidget(self.title, 1)
        heading.addWidget(self.open_button, 0, Qt.AlignmentFlag.AlignTop)
        left.addLayout(heading)
        for widget in (self.state, self.remedy):
            left.addWidget(widget)
        left.addLayout(facts)
        left.addStretch(1)
        charts = QVBoxLayout()
        charts.addWidget(self.vram_chart)
        charts.addWidget(self.latency_chart)
        body = QHBoxLayout(self)
        body.addLayout(left, 5)
        body.addLayout(charts, 3)
        body.addWidget(self.log, 3)
        self.show_row(None)

    def use_open_action(self, action: QAction) -> None:
        self.open_button.setDefaultAction(action)

    def show_row(self, row: FleetRow | None, now: float | None = None) -> None:
        self.row = row
        self.open_button.setVisible(row is not None)
        if row is None:
            self.title.setText("<i>Select an instance to see why it is in its state.</i>")
            for widget in (self.state, self.remedy, *self.facts.values()):
                widget.clear()
            self.log.clear()
            self.vram_chart.show_values(())
            self.latency_chart.show_values(())
            return
        now = time.time() if now is None else now
        h = row.health
        said = standing(row)
        self.title.setText(f"<b>{html.escape(row.name)}</b> — {row.kind} · {html.escape(h.url)}")
        color = STATE_COLORS[said.light]
        reason = f": {html.escape(said.reason)}" if said.reason else ""
        self.state.setText(f"<b style='color:{color}'>{said.word}</b>{reason}")
        self.remedy.setText(f"What to do: {said.remedy}" if said.remedy else "")
        self.facts["Device"].setText(device(row))
        self.facts["VRAM"].setText(vram(row, now))
        self.facts["Queue"].setText(queue(row))
        self.facts["Latency"].setText(latency(row))
        self.facts["Uptime"].setText(ago(h.online_since, now))
        crash = row.instance.last_crash if row.instance and row.instance.last_crash else ""
        self.facts["Process"].setText(process(row) + (f" — last crash: {crash}" if crash else ""))
        self._show_history(row, now)
        self._show_log(row.name)

    def _show_history(self, row: FleetRow, now: float) -> None:
        track = self._history.tracks.get(row.name)
        stale = (
            f"{standing(row).word}, last answer {ago(row.health.seen_at, now)} ago"
            if is_stale(row)
            else ""
        )
        if track is None:
            self.vram_chart.show_values((), stale=stale)
            self.latency_chart.show_values((), stale=stale)
            return
        shares = [None if v is None else 100 * v for v in track.vram_share]
        self.vram_chart.show_values(shares, stale=stale)
        latencies = [v for v in track.latency_ms if v is not None]
        top = max([50.0, *latencies]) * 1.2
        self.latency_chart.show_values(list(track.latency_ms), maximum=top, stale=stale)

    def _show_log(self, name: str) -> None:
        lines = self._log_lines(name)[-LOG_TAIL:]
        text = "\n".join(lines) if lines else f"({self._log_state(name) or 'no log lines yet'})"
        if self.log.toPlainText() != text:
            self.log.setPlainText(text)
            self.log.verticalScrollBar().setValue(self.log.verticalScrollBar().maximum())
