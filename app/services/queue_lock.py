"""The lock that lets exactly one process dispatch a queue kept in a local SQLite file."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import IO

from app.services.host import here


class DispatcherLock:
    """Held by the one process that dispatches; the others can read who that is.

    An OS file lock: it goes with the process, however that ends (no stale lock after kill -9)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle: IO[str] | None = None

    @property
    def _who_file(self) -> Path:
        return self.path.with_suffix(".holder")

    @property
    def held(self) -> bool:
        return self._handle is not None  # (an OS lock stays held while the process lives)

    def free_in(self) -> float:
        """When to try again: at once is cheap, the OS says."""
        return 1.0

    def acquire(self, who: str) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 (held while dispatching)
        if not _try_lock(handle):
            handle.close()
            return False
        self._handle = handle
        self._who_file.write_text(f"{who} on {here()}", encoding="utf-8")
        return True

    def holder(self) -> str | None:
        """Who dispatches now, or None when nobody does."""
        if self._handle is not None:
            return self._who_file.read_text(encoding="utf-8")
        try:
            handle = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115
        except OSError:
            return None
        with handle:
            if _try_lock(handle):
                _unlock(handle)
                return None
        try:
            return self._who_file.read_text(encoding="utf-8") or "another process"
        except OSError:
            return "another process"

    def release(self) -> None:
        if self._handle is not None:
            self._who_file.unlink(missing_ok=True)
            _unlock(self._handle)
            self._handle.close()
            self._handle = None


def _try_lock(handle: IO[str]) -> bool:
    try:
        if sys.platform == "win32":
            import msvcrt

            handle.seek(0)
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        else:
            import fcntl

            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def _unlock(handle: IO[str]) -> None:
    if sys.platform == "win32":
        import msvcrt

        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)
    else:
        import fcntl

        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
