"""The queue's schema versions: a version 1 file (before jobs said who queued them) opens,
keeps its jobs, and gains the column; new jobs carry user@host, shown by `queue list`."""

from __future__ import annotations

import getpass
import socket
import sqlite3
from pathlib import Path

from app.core.queue import JobSpec
from app.services.host import user_at_host
from app.services.queue_db import SCHEMA, SCHEMA_VERSION
from app.services.queue_service import FleetQueue, QueuePaths
from app.services.queue_store import QueueStore

WORKFLOW = {"1": {"class_type": "EmptyImage", "inputs": {}}}


def version_1(path: Path) -> None:
    """The file as version 1 wrote it: the same tables without jobs.queued_by."""
    db = sqlite3.connect(path)
    db.executescript(SCHEMA.replace(",\n    queued_by TEXT", ""))
    db.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    db.execute(
        "INSERT INTO jobs (name, workflow, workflow_key, out_dir, created)"
        " VALUES ('old', '{}', 'k', '/tmp/out', 1.0)"
    )
    db.commit()
    db.close()


def test_a_version_1_queue_is_upgraded_and_keeps_its_jobs(tmp_path: Path) -> None:
    path = tmp_path / "queue.db"
    version_1(path)
    store = QueueStore(path)
    (old,) = store.jobs()
    assert (old.name, old.queued_by) == ("old", None)  # who queued it was never written
    store.close()
    db = sqlite3.connect(path)
    (version,) = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    assert version == str(SCHEMA_VERSION) == "2"
    assert "queued_by" in {row[1] for row in db.execute("PRAGMA table_info(jobs)")}
    db.close()
    again = QueueStore(path)  # opened again: nothing to do, nothing lost
    assert [j.name for j in again.jobs()] == ["old"]
    again.close()


def test_a_job_says_who_queued_it(tmp_path: Path) -> None:
    assert user_at_host() == f"{getpass.getuser()}@{socket.gethostname()}"
    queue = FleetQueue(QueuePaths.under(tmp_path))
    try:
        added = queue.add(JobSpec("mine", WORKFLOW, 2, seed=1))
        assert queue.store.job_brief(added.job).queued_by == user_at_host()
        assert queue.store.jobs()[0].queued_by == user_at_host()
    finally:
        queue.close()
