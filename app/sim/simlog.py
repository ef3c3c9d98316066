"""The instance's log: printed like ComfyUI's and kept for /distributed/local_log."""

from __future__ import annotations

import sys
from collections import deque


class SimLog:
    def __init__(self, keep: int = 2000) -> None:
        self.lines: deque[str] = deque(maxlen=keep)

    def write(self, line: str, stream: str = "stdout") -> None:
        self.lines.append(line)
        target = sys.stderr if stream == "stderr" else sys.stdout
        print(line, file=target, flush=True)
