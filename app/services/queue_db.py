"""The fleet queue's jobs and items, the same wherever they are kept: one schema (SQLite's
words; PostgreSQL's are made from them) with one version, and every query of the queue (the
databases say only how a statement runs, see queue_store and queue_pg)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from app.core.errors import ComfyFleetError
from app.core.names import file_stem
from app.core.queue import ENDED, MAX_ATTEMPTS, OUT, ItemSpec, ItemState, JobSpec, workflow_key
from app.core.workflow import Workflow

T = TypeVar("T")
SCHEMA_VERSION = 2  # 2: jobs say who queued them (queued_by)
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    workflow TEXT NOT NULL,
    workflow_key TEXT NOT NULL,
    workers TEXT,
    priority INTEGER NOT NULL DEFAULT 0,
    out_dir TEXT NOT NULL,
    created REAL NOT NULL,
    paused INTEGER NOT NULL DEFAULT 0,
    cancelled INTEGER NOT NULL DEFAULT 0,
    ended REAL,
    note TEXT,
    queued_by TEXT
);
CREATE TABLE IF NOT EXISTS items (
    id INTEGER PRIMARY KEY,
    job INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    seed TEXT,
    overrides TEXT,
    state TEXT NOT NULL,
    participant TEXT,
    prompt_id TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    sent_at REAL,
    started_at REAL,
    finished_at REAL,
    error TEXT,
    files TEXT
);
CREATE INDEX IF NOT EXISTS items_by_job ON items (job, state);
CREATE INDEX IF NOT EXISTS items_by_state ON items (state, job, idx);
CREATE INDEX IF NOT EXISTS items_by_prompt ON items (prompt_id);
CREATE INDEX IF NOT EXISTS items_by_finish ON items (finished_at);
"""


@dataclass(frozen=True)
class Item:
    id: int
    job: int
    index: int
    seed: int | None
    overrides: tuple[tuple[str, str, Any], ...]
    state: ItemState
    participant: str | None = None
    prompt_id: str | None = None
    attempts: int = 0
    sent_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    error: str | None = None
    files: tuple[str, ...] = ()

    @property
    def spec(self) -> ItemSpec:
        return ItemSpec(self.index, self.seed, self.overrides)


@dataclass(frozen=True)
class Job:
    id: int
    name: str
    workflow_key: str
    workers: tuple[str, ...] | None
    priority: int
    out_dir: str
    created: float
    paused: bool
    cancelled: bool
    ended: float | None
    note: str | None = None
    queued_by: str | None = None  # user@host (None: queued before versions that said)
    counts: dict[ItemState, int] = field(default_factory=dict)
    first_sent: float | None = None
    last_finished: float | None = None

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def folder(self, root: Path | None) -> Path:
        """Where its images go: its own folder, or one under the dispatching machine's `root`."""
        path = Path(self.out_dir)
        return path if path.is_absolute() or root is None else root / path

    def count(self, *states: ItemState) -> int:
        return sum(self.counts.get(s, 0) for s in states)

    @property
    def state(self) -> str:
        """What the job is doing, in one word for lists."""
        if self.cancelled:
            return "cancelled"
        if self.count(*ENDED) == self.total:
            return "failed" if self.count(ItemState.FAILED) else "done"
        if self.paused:
            return "paused"
        return "running" if self.count(*OUT) else "queued"

    def eta_s(self, now: float) -> float | None:
        """From its own pace so far: the items it finished since its first was sent."""
        done = self.count(ItemState.DONE, ItemState.FAILED)
        left = self.count(ItemState.QUEUED, *OUT)
        if not left:
            return 0.0
        if not done or self.first_sent is None:
            return None
        return left * (now - self.first_sent) / done


class QueueStoreError(ComfyFleetError):
    """The queue's database cannot be used; the sentence says why and what to do."""


class LeaseLost(QueueStoreError):
    """This process no longer holds the queue's dispatcher lease (another one took over)."""


Cursor = Any  # sqlite3's or psycopg's: both iterate rows and have fetchone/rowcount


class QueueDb:
    """The queue's jobs and items, the same on every database it is kept in: each method is
    one short transaction, safe between processes (and machines, for a server).

    Subclasses connect and say how a statement runs (`_q`, written with `?` and `:name`
    placeholders), how a transaction is kept (`_write`) and how a change by another process
    is noticed (`data_version`)."""

    where: str  # the database in words, for messages (never a password)

    def _q(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> Cursor:
        raise NotImplementedError

    def _q_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        raise NotImplementedError

    def _write(self, body: Callable[[], T], *, retry_commit: bool = True) -> T:
        """`body` in one transaction; `retry_commit`: it may run again when the connection
        broke while committing (the outcome unknown: for changes that do the same twice)."""
        raise NotImplementedError

    def _claim(self, item: int, participant: str, prompt_id: str) -> bool:
        raise NotImplementedError

    def data_version(self) -> int:
        """Changes whenever another connection (another process) committed."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def _meta(self, key: str) -> str | None:
        row = self._q("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def _set_meta(self, key: str, value: str) -> None:
        self._q(
            "INSERT INTO meta (key, value) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    # jobs

    def add_job(
        self,
        spec: JobSpec,
        items: Sequence[ItemSpec],
        root: Path | None,
        queued_by: str | None = None,
    ) -> int:
        """The job's images go to spec.out_dir, else to a folder of its own under `root`, or
        (root None: a queue shared by machines) under the queue folder of the machine that
        dispatches it; `queued_by`: who queues it (user@host)."""
        rows = [
            (
                i.index,
                None if i.seed is None else str(i.seed),
                json.dumps(i.overrides) if i.overrides else None,
                ItemState.QUEUED.value,
            )
            for i in items
        ]

        def body() -> int:
            job = int(
                self._q(
                    "INSERT INTO jobs (name, workflow, workflow_key, workers, priority, out_dir,"
                    " created, queued_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                    (
                        spec.name,
                        json.dumps(spec.workflow),
                        workflow_key(spec.workflow),
                        None if spec.workers is None else json.dumps(list(spec.workers)),
                        spec.priority,
                        spec.out_dir or "",
                        time.time(),
                        queued_by,
                    ),
                ).fetchone()[0]
            )
            if not spec.out_dir:
                folder = Path(f"job-{job:05}-{file_stem(spec.name)}")
                self._q(
                    "UPDATE jobs SET out_dir = ? WHERE id = ?",
                    (str(folder if root is None else root / folder), job),
                )
            self._q_many(
                "INSERT INTO items (job, idx, seed, overrides, state) VALUES (?, ?, ?, ?, ?)",
                [(job, *row) for row in rows],
            )
            return job

        return self._write(body, retry_commit=False)  # (twice would queue it twice)

    def workflow(self, job: int) -> Workflow:
        row = self._q("SELECT workflow FROM jobs WHERE id = ?", (job,)).fetchone()
        if row is None:
            raise KeyError(job)
        value: Workflow = json.loads(row[0])
        return value

    def jobs(self, job_ids: Sequence[int] | None = None) -> list[Job]:
        """Every job (or the given ones) with its items counted by state, newest last."""
        where = ""
        if job_ids is not None:
            if not job_ids:
                return []
            where = f"WHERE j.id IN ({','.join('?' * len(job_ids))})"
        rows = self._q(
            f"SELECT {JOB_COLUMNS} FROM jobs j {where} ORDER BY j.id", tuple(job_ids or ())
        ).fetchall()
        counts: dict[int, dict[ItemState, int]] = {}
        # (per state, read through the index: no item row is touched)
        for job, state, n in self._q("SELECT job, state, COUNT(*) FROM items GROUP BY job, state"):
            counts.setdefault(job, {})[ItemState(state)] = n
        times = {
            job: (first, last)
            for job, first, last in self._q(
                "SELECT job, MIN(sent_at), MAX(finished_at) FROM items"
                " WHERE job IN (SELECT id FROM jobs WHERE ended IS NULL) GROUP BY job"
            )
        }
        return [_job(r, counts.get(r[0], {}), times.get(r[0], (None, None))) for r in rows]

    def client_id(self) -> str:
        """The queue's own websocket client id, the same for every dispatcher of this queue:
        a new one still hears of the prompts an earlier one sent."""

        def body() -> str:
            found = self._meta("client_id")
            if found is None:
                found = f"comfyfleet-queue-{uuid.uuid4().hex[:12]}"
                self._set_meta("client_id", found)
            return found

        return self._write(body)

    def job_brief(self, job: int) -> Job:
        """The job without its items counted (cheap, for the dispatcher)."""
        row = self._q(f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?", (job,)).fetchone()
        if row is None:
            raise KeyError(job)
        return _job(row, {}, (None, None))

    def waiting_count(self, job: int | None = None) -> int:
        if job is None:
            row = self._q("SELECT COUNT(*) FROM items WHERE state = 'queued'").fetchone()
        else:
            row = self._q(
                "SELECT COUNT(*) FROM items WHERE state = 'queued' AND job = ?", (job,)
            ).fetchone()
        return int(row[0])

    def cancelled_jobs(self) -> set[int]:
        """Cancelled jobs that still have items out (to be stopped where they run)."""
        return {
            row[0]
            for row in self._q(
                "SELECT DISTINCT i.job FROM items i JOIN jobs j ON j.id = i.job"
                " WHERE i.state IN ('sent', 'running') AND j.cancelled = 1"
            )
        }

    def set_note(self, job: int, note: str | None) -> None:
        self._write(lambda: self._q("UPDATE jobs SET note = ? WHERE id = ?", (note, job)))

    def finished_since(self, since: float) -> dict[str, list[float]]:
        """When each participant finished its images since then (for images per minute)."""
        found: dict[str, list[float]] = {}
        for participant, at in self._q(
            "SELECT participant, finished_at FROM items WHERE finished_at >= ? AND state = 'done'"
            " ORDER BY finished_at",
            (since,),
        ):
            found.setdefault(str(participant), []).append(float(at))
        return found

    def job(self, job: int) -> Job:
        found = self.jobs([job])
        if not found:
            raise KeyError(job)
        return found[0]

    def items(self, job: int | None = None, states: Sequence[ItemState] = ()) -> list[Item]:
        clauses: list[str] = []
        params: list[Any] = []
        if job is not None:
            clauses.append("job = ?")
            params.append(job)
        if states:
            clauses.append(f"state IN ({','.join('?' * len(states))})")
            params.extend(s.value for s in states)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        return [
            _item(r)
            for r in self._q(f"SELECT {ITEM_COLUMNS} FROM items {where} ORDER BY job, idx", params)
        ]

    def waiting(self, limit: int) -> list[Item]:
        """Queued items that may go out now, highest priority first, then oldest job, in order."""
        return [
            _item(r)
            for r in self._q(
                f"SELECT {ITEM_COLUMNS.replace('id,', 'i.id,', 1)} FROM items i"
                " JOIN jobs j ON j.id = i.job"
                " WHERE i.state = 'queued' AND j.paused = 0 AND j.cancelled = 0"
                " ORDER BY j.priority DESC, j.id, i.idx LIMIT ?",
                (limit,),
            )
        ]

    def set_paused(self, paused: bool, job: int | None = None) -> None:
        """One job, or the whole queue (job None)."""

        def body() -> int:
            if job is None:
                self._set_meta("paused", "1" if paused else "0")
                return 1
            return int(
                self._q(
                    "UPDATE jobs SET paused = :paused, note = CASE WHEN :paused = 0"
                    " AND note LIKE 'paused: %' THEN NULL ELSE note END WHERE id = :job",
                    {"paused": int(paused), "job": job},
                ).rowcount
            )

        if self._write(body) == 0:
            raise KeyError(job)

    def paused(self) -> bool:
        return self._meta("paused") == "1"

    def cancel(self, job: int) -> list[Item]:
        """Its waiting items are cancelled at once; the ones out are returned, to be stopped
        where they run (they become cancelled once stopped)."""

        def body() -> None:
            if self._q("UPDATE jobs SET cancelled = 1 WHERE id = ?", (job,)).rowcount == 0:
                raise KeyError(job)
            self._q(
                "UPDATE items SET state = 'cancelled', finished_at = ?"
                " WHERE job = ? AND state = 'queued'",
                (time.time(), job),
            )
            self._end_if_done(job)

        self._write(body)
        return self.items(job, OUT)

    def retry(self, job: int) -> int:
        """Failed and cancelled items queued again; how many."""

        def body() -> int:
            if (
                self._q("UPDATE jobs SET cancelled = 0, ended = NULL WHERE id = ?", (job,)).rowcount
                == 0
            ):
                raise KeyError(job)
            return int(
                self._q(
                    "UPDATE items SET state = 'queued', attempts = 0, error = NULL,"
                    " participant = NULL, prompt_id = NULL"
                    " WHERE job = ? AND state IN ('failed', 'cancelled')",
                    (job,),
                ).rowcount
            )

        return self._write(body)

    def prune(self, ended_before: float) -> int:
        """Jobs that ended before then leave the DB (their files stay); how many."""
        return self._write(
            lambda: int(
                self._q(
                    "DELETE FROM jobs WHERE ended IS NOT NULL AND ended < ?", (ended_before,)
                ).rowcount
            )
        )

    # moving a queue whole

    def dump(self) -> QueueDump:
        return QueueDump(
            self._q(f"SELECT id, {JOB_FIELDS} FROM jobs ORDER BY id").fetchall(),
            self._q(f"SELECT job, {ITEM_FIELDS} FROM items ORDER BY job, idx").fetchall(),
            self._meta("client_id"),
        )

    def load(self, dump: QueueDump) -> dict[int, int]:
        """Every job and item of `dump` as they are, in one transaction (new ids: the job ids
        of the dump → its own); its client id where this queue has none yet (so a dispatcher
        here still hears of the prompts already out)."""
        jobs = ", ".join("?" * len(JOB_FIELDS.split(",")))
        items = ", ".join("?" * (len(ITEM_FIELDS.split(",")) + 1))

        def body() -> dict[int, int]:
            ids = {
                row[0]: int(
                    self._q(
                        f"INSERT INTO jobs ({JOB_FIELDS}) VALUES ({jobs}) RETURNING id", row[1:]
                    ).fetchone()[0]
                )
                for row in dump.jobs
            }
            self._q_many(
                f"INSERT INTO items (job, {ITEM_FIELDS}) VALUES ({items})",
                [(ids[row[0]], *row[1:]) for row in dump.items],
            )
            if dump.client_id is not None and self._meta("client_id") is None:
                self._set_meta("client_id", dump.client_id)
            return ids

        return self._write(body, retry_commit=False)  # (twice would hold it twice)

    # items

    def sent(self, item: int, participant: str, prompt_id: str) -> bool:
        """Claims a queued item for `participant`, written before the prompt goes out (a crash
        right after sending loses nothing); False when it is no longer queued (cancelled from
        another desktop). LeaseLost where this process no longer dispatches the queue."""
        return self._write(lambda: self._claim(item, participant, prompt_id))

    def running(self, item: int, at: float | None = None) -> None:
        self._update(item, state=ItemState.RUNNING, started_at=at or time.time())

    def done(self, item: int, files: Sequence[str]) -> None:
        self._finish(item, ItemState.DONE, files=json.dumps(list(files)), error=None)

    def failed(self, item: int, error: str) -> None:
        self._finish(item, ItemState.FAILED, error=error)

    def cancelled(self, item: int) -> None:
        self._finish(item, ItemState.CANCELLED)

    def lost(self, item: int, cause: str) -> ItemState:
        """Its participant died or lost it: queued again, or failed after MAX_ATTEMPTS."""

        def body() -> ItemState:
            row = self._q("SELECT attempts FROM items WHERE id = ?", (item,)).fetchone()
            attempts = int(row[0]) + 1
            if attempts >= MAX_ATTEMPTS:
                self._end(item, ItemState.FAILED, error=f"lost {attempts} times; last: {cause}")
                return ItemState.FAILED
            self._set(
                item,
                state=ItemState.QUEUED,
                attempts=attempts,
                error=cause,
                participant=None,
                prompt_id=None,
            )
            return ItemState.QUEUED

        return self._write(body, retry_commit=False)  # (twice would count two tries)

    def put_back(self, item: int, cause: str) -> None:
        """Queued again without counting a try (the fault was not its participant's)."""
        self._update(item, state=ItemState.QUEUED, error=cause, participant=None, prompt_id=None)

    def _finish(self, item: int, state: ItemState, **values: Any) -> None:
        self._write(lambda: self._end(item, state, **values))

    def _end(self, item: int, state: ItemState, **values: Any) -> None:
        self._set(item, state=state, finished_at=time.time(), **values)
        row = self._q("SELECT job FROM items WHERE id = ?", (item,)).fetchone()
        self._end_if_done(int(row[0]))

    def _end_if_done(self, job: int) -> None:
        left = self._q(
            "SELECT 1 FROM items WHERE job = ? AND state IN ('queued', 'sent', 'running') LIMIT 1",
            (job,),
        ).fetchone()
        if left is None:
            self._q("UPDATE jobs SET ended = ? WHERE id = ? AND ended IS NULL", (time.time(), job))

    def _update(self, item: int, **values: Any) -> None:
        self._write(lambda: self._set(item, **values))

    def _set(self, item: int, **values: Any) -> None:
        names = ", ".join(f"{k} = ?" for k in values)
        params = [v.value if isinstance(v, ItemState) else v for v in values.values()]
        self._q(f"UPDATE items SET {names} WHERE id = ?", (*params, item))


@dataclass(frozen=True)
class QueueDump:
    jobs: list[Sequence[Any]]  # (id, *JOB_FIELDS)
    items: list[Sequence[Any]]  # (job, *ITEM_FIELDS)
    client_id: str | None


def check_version(found: str | None, where: str) -> None:
    """A queue written by a newer version (or with no readable version) is left as it is."""
    found = found or ""
    if not found.isdigit():
        raise QueueStoreError(damaged(where, f"schema version {found!r}"))
    if int(found) > SCHEMA_VERSION:
        raise QueueStoreError(
            f"{where} was written by a newer ComfyFleet (queue schema {found}, this version"
            f" knows {SCHEMA_VERSION}): update ComfyFleet; the queue was left as it is"
        )


def damaged(path: str, said: str) -> str:
    return (
        f"the queue's database {path} is damaged ({said}): restore it from a backup, or move"
        " it away to start a new queue; ComfyFleet left it as it is"
    )


def _job(row: Sequence[Any], counts: dict[ItemState, int], times: tuple[Any, Any]) -> Job:
    return Job(
        id=row[0],
        name=row[1],
        workflow_key=row[2],
        workers=None if row[3] is None else tuple(json.loads(row[3])),
        priority=row[4],
        out_dir=row[5],
        created=row[6],
        paused=bool(row[7]),
        cancelled=bool(row[8]),
        ended=row[9],
        note=row[10],
        queued_by=row[11],
        counts=counts,
        first_sent=times[0],
        last_finished=times[1],
    )


JOB_COLUMNS = (
    "id, name, workflow_key, workers, priority, out_dir, created, paused, cancelled, ended,"
    " note, queued_by"
)
ITEM_COLUMNS = (
    "id, job, idx, seed, overrides, state, participant, prompt_id, attempts, sent_at,"
    " started_at, finished_at, error, files"
)
JOB_FIELDS = (  # (a job's own values, for moving it)
    "name, workflow, workflow_key, workers, priority, out_dir, created, paused, cancelled,"
    " ended, note, queued_by"
)
ITEM_FIELDS = ITEM_COLUMNS.removeprefix("id, job, ")


def _item(row: Sequence[Any]) -> Item:
    return Item(
        id=row[0],
        job=row[1],
        index=row[2],
        seed=None if row[3] is None else int(row[3]),
        overrides=tuple(tuple(o) for o in json.loads(row[4])) if row[4] else (),
        state=ItemState(row[5]),
        participant=row[6],
        prompt_id=row[7],
        attempts=row[8],
        sent_at=row[9],
        started_at=row[10],
        finished_at=row[11],
        error=row[12],
        files=tuple(json.loads(row[13])) if row[13] else (),
    )
