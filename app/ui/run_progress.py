"""One row per participant of a run: its state, step progress, images and time (a timer for
who is still waiting or running, so a stuck one is seen to be stuck)."""

from __future__ import annotations

import time

from PySide6.QtWidgets import QProgressBar, QTreeWidget, QTreeWidgetItem

from app.core.runs import Participant, Phase, Progress
from app.services.job_service import CanaryReport

PHASE_MARK = {
    Phase.WAITING: "…",
    Phase.RUNNING: "▶",
    Phase.DONE: "✔",
    Phase.FAILED: "✘",
    Phase.INTERRUPTED: "■",
    Phase.SKIPPED: "⤼",
}


class RunProgress(QTreeWidget):
    def __init__(self) -> None:
        super().__init__()
        self.setObjectName("runProgress")
        self.setHeaderLabels(["Participant", "State", "Progress", "Images", "Time"])
        self.setRootIsDecorated(False)
        for column, width in enumerate((150, 320, 110, 60)):
            self.setColumnWidth(column, width)
        self.items: dict[str, QTreeWidgetItem] = {}
        self.latest: dict[str, Progress] = {}
        self._started = 0.0

    def begin(self, participants: list[Participant]) -> None:
        self.clear()
        self.items.clear()
        self.latest.clear()
        self._started = time.monotonic()
        for participant in participants:
            item = QTreeWidgetItem([participant.name, "… waiting", "", "0", ""])
            self.addTopLevelItem(item)
            bar = QProgressBar()
            bar.setMaximum(1)
            bar.setValue(0)
            self.setItemWidget(item, 2, bar)
            self.items[participant.name] = item

    def busy(self) -> list[str]:
        return [p.name for p in self.latest.values() if p.phase in (Phase.WAITING, Phase.RUNNING)]

    def show_progress(self, progress: Progress) -> None:
        self.latest[progress.name] = progress
        item = self.items.get(progress.name)
        if item is None:
            return
        item.setText(1, f"{PHASE_MARK[progress.phase]} {progress.describe()}")
        item.setToolTip(1, progress.error or progress.describe())
        bar = self.itemWidget(item, 2)
        if isinstance(bar, QProgressBar):
            bar.setMaximum(progress.maximum or 1)
            bar.setValue(progress.value if progress.maximum else int(progress.phase is Phase.DONE))
        item.setText(3, str(len(progress.images)))
        if progress.seconds is not None:
            item.setText(4, f"{progress.seconds:.2f} s")

    def tick(self) -> None:
        if not self._started:
            return
        elapsed = time.monotonic() - self._started
        for name, item in self.items.items():
            progress = self.latest.get(name)
            if progress is None or progress.phase in (Phase.WAITING, Phase.RUNNING):
                item.setText(4, f"{elapsed:.0f} s…")

    def stop_clock(self) -> None:
        self._started = 0.0

    def show_canary(self, reports: list[CanaryReport]) -> None:
        self.stop_clock()
        for report in reports:
            item = self.items.get(report.name)
            if item is None:
                continue
            took = "" if report.seconds is None else f" in {report.seconds:.2f} s"
            item.setText(1, f"✔ delivered{took}" if report.delivered else f"✘ {report.error}")
            item.setToolTip(1, report.error or "delivered")
            item.setText(4, "" if report.seconds is None else f"{report.seconds:.2f} s")
