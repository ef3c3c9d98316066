"""The instance's log: printed like ComfyUI's, kept with each entry's time for ComfyUI's own
log routes (/internal/logs…) and ComfyUI-Distributed's /distributed/local_log."""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Callable
from datetime import datetime

Entry = dict[str, str]  # {"t": ISO time, "m": message with its newline}, as recorded


class SimLog:
    def __init__(self, keep: int = 2000) -> None:
        self.lines: deque[str] = deque(maxlen=keep)
        self.entries: deque[Entry] = deque(maxlen=keep)
        self.on_entry: Callable[[Entry], None] | None = None

    def write(self, line: str, stream: str = "stdout") -> None:
        self.lines.append(line)
        entry = {"t": datetime.now().isoformat(), "m": f"{line}\n"}
        self.entries.append(entry)
        if self.on_entry is not None:
            self.on_entry(entry)
        target = sys.stderr if stream == "stderr" else sys.stdout
        print(line, file=target, flush=True)
