"""The fleet queue in a local SQLite file (WAL), shared by every process of the app on this
machine: the embedded default."""

from __future__ import annotations

import errno
import sqlite3
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from pathlib import Path
from typing import Any

from app.services.queue_db import (
    SCHEMA,
    SCHEMA_VERSION,
    Cursor,
    QueueDb,
    QueueStoreError,
    T,
    check_version,
    damaged,
)

SQLITE_HEADER = b"SQLite format 3\x00"


class QueueStore(QueueDb):
    """The embedded default: one SQLite file (WAL) beside the app's data.

    A file that is not this queue's database as this version knows it (damaged, something
    else, a folder, written by a newer version) is refused with the reason and left as it is."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.where = str(path)
        _check_file(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, timeout=10.0, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise self._unusable(exc) from None
        try:
            self._open()
        except BaseException as exc:
            self._db.close()
            if isinstance(exc, sqlite3.Error):
                raise self._unusable(exc) from None
            raise

    def _open(self) -> None:
        tables = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master")}
        if "meta" in tables:  # read before anything is written: a newer file stays as it is
            check_version(self._meta("schema_version"), self.where)
            moved = self._meta("moved_to")
            if moved is not None:
                raise QueueStoreError(
                    f"the jobs of {self.where} were moved to {moved} (`comfy-fleet queue"
                    " migrate`): use that queue (--queue-url, COMFY_FLEET_QUEUE_URL or the"
                    " setting app.queue_url); the file was kept as it was"
                )
        problems = [r[0] for r in self._db.execute("PRAGMA quick_check(3)")]
        if problems != ["ok"]:
            raise QueueStoreError(damaged(self.where, "; ".join(problems)))
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(SCHEMA)
        if self._meta("schema_version") == str(SCHEMA_VERSION):
            return

        def upgrade() -> None:  # new, or version 1 (its jobs' senders stay unknown)
            columns = {r[1] for r in self._db.execute("PRAGMA table_info(jobs)")}
            if "queued_by" not in columns:
                self._db.execute("ALTER TABLE jobs ADD COLUMN queued_by TEXT")
            self._set_meta("schema_version", str(SCHEMA_VERSION))

        self._write(upgrade)

    def _unusable(self, exc: BaseException) -> QueueStoreError:
        return QueueStoreError(_unusable_database(self.path, exc))

    def close(self) -> None:
        self._db.close()

    def _q(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> Cursor:
        return self._db.execute(sql, params)

    def _q_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self._db.executemany(sql, rows)

    def _write(self, body: Callable[[], T], *, retry_commit: bool = True) -> T:
        """A disk that is full or read-only, or a damaged file, is said in words
        (QueueStoreError) and nothing of the transaction is kept."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise self._unusable(exc) from None
        try:
            result = body()
        except BaseException as exc:
            with suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise self._unusable(exc) from None
            raise
        try:
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            with suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")
            raise self._unusable(exc) from None
        return result

    def _claim(self, item: int, participant: str, prompt_id: str) -> bool:
        return bool(
            self._q(
                "UPDATE items SET state = 'sent', participant = ?, prompt_id = ?, sent_at = ?"
                " WHERE id = ? AND state = 'queued'",
                (participant, prompt_id, time.time(), item),
            ).rowcount
        )

    def data_version(self) -> int:
        return int(self._db.execute("PRAGMA data_version").fetchone()[0])

    def mark_moved(self, where: str) -> None:
        """No process opens this file as its queue again (it is kept, as it was)."""
        self._write(lambda: self._set_meta("moved_to", where))


def _check_file(path: Path) -> None:
    """Refuse, before SQLite opens it, what can be seen not to be a queue's database."""
    if not path.exists():
        return
    if not path.is_file():
        raise QueueStoreError(
            f"{path} is a folder (or another non-file), not the queue's database: move it"
            " away to start a new queue; ComfyFleet left it as it is"
        )
    try:
        with path.open("rb") as handle:
            header = handle.read(len(SQLITE_HEADER))
    except OSError as exc:
        raise QueueStoreError(f"cannot read the queue's database {path}: {exc.strerror}") from None
    if header and header != SQLITE_HEADER:
        raise QueueStoreError(damaged(str(path), "not an SQLite database"))


def _unusable_database(path: Path, exc: BaseException) -> str:
    """What SQLite's complaint about the queue's file means for the user."""
    said = str(exc)
    code = getattr(exc, "sqlite_errorname", "")
    if code == "SQLITE_FULL" or getattr(exc, "errno", None) == errno.ENOSPC:
        return f"the disk holding {path} is full: free some space; nothing was changed"
    if code.startswith("SQLITE_READONLY") or isinstance(exc, PermissionError):
        return f"cannot write the queue's database {path}: it or its folder is read-only"
    if code.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")):
        return damaged(str(path), said)
    return f"cannot use the queue's database {path}: {said}"
