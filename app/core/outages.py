"""Telling a worker that flaps from one that went down once: each one's recent outages."""

from __future__ import annotations

from collections import deque

UNSTABLE_OUTAGES = 3  # outages within the window that make a worker unstable
UNSTABLE_WINDOW_S = 600.0


class Outages:
    def __init__(
        self, threshold: int = UNSTABLE_OUTAGES, window_s: float = UNSTABLE_WINDOW_S
    ) -> None:
        self.threshold = threshold
        self.window_s = window_s
        self._seen: dict[str, deque[float]] = {}

    def went_down(self, name: str, now: float) -> int:
        """One more outage; how many it has had within the window."""
        self._seen.setdefault(name, deque()).append(now)
        return self.count(name, now)

    def count(self, name: str, now: float) -> int:
        seen = self._seen.get(name)
        while seen and now - seen[0] > self.window_s:
            seen.popleft()
        return len(seen or ())

    def unstable(self, name: str, now: float) -> int:
        """Its outages within the window when they make it unstable, else 0."""
        count = self.count(name, now)
        return count if count >= self.threshold else 0
