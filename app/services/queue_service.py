"""The fleet queue as a use case: queue a job, and dispatch it (one process at a time, on any
machine): the same for the window, `up`, `queue run` and the service."""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import aiohttp

from app.core.config import FleetConfig
from app.core.errors import ComfyFleetError
from app.core.queue import ItemState, JobSpec, QueueError, check_job, expand
from app.core.queue_url import QUEUE_URL_ENV, chosen_queue_url
from app.services.dispatcher import Dispatcher
from app.services.host import user_at_host
from app.services.job_service import JobService
from app.services.paths import AppPaths
from app.services.queue_db import Job, LeaseLost, QueueDb
from app.services.queue_lock import DispatcherLock
from app.services.queue_pg import PgQueueStore
from app.services.queue_store import QueueStore
from app.services.storage import unwritable
from app.services.tasks import FailureListener, wait_or_stop

WAIT_S = 5.0  # the longest a process waiting for the queue's lock waits before it tries again
KEEP_DAYS = 30.0  # ended jobs leave the DB after this long (their files stay)
HELD_CHECK_S = 0.5  # how often a dispatcher looks whether its lease is still its own


@dataclass(frozen=True)
class QueuePaths:
    db: Path
    lock: Path
    out_root: Path  # each job's own folder, unless it was given one

    @classmethod
    def under(cls, data_dir: Path) -> QueuePaths:
        return cls(data_dir / "queue.db", data_dir / "queue.lock", data_dir / "queue")


class QueueBusy(ComfyFleetError):
    """Another process dispatches this queue."""


class DispatchLock(Protocol):
    """Who may dispatch: a file lock for the SQLite queue, a lease for a server's."""

    @property
    def held(self) -> bool: ...

    def acquire(self, who: str) -> bool: ...

    def holder(self) -> str | None: ...

    def free_in(self) -> float: ...

    def release(self) -> None: ...


@dataclass(frozen=True)
class Added:
    job: int
    items: int
    dispatcher: str | None  # who will run it, None when nobody dispatches now


class FleetQueue:
    """The queue in `paths.db`, or on the PostgreSQL server at `url` (shared by a team)."""

    def __init__(
        self, paths: QueuePaths, rng: random.Random | None = None, url: str | None = None
    ) -> None:
        self.paths = paths
        self.url = url  # (None: the local file)
        self.store: QueueDb
        self.lock: DispatchLock
        if url:
            self.store = pg = PgQueueStore(url)
            self.lock = pg.dispatcher_lease()
        else:
            self.store = QueueStore(paths.db)
            self.lock = DispatcherLock(paths.lock)
        self._rng = rng

    def close(self) -> None:
        self.lock.release()
        self.store.close()

    def add(self, spec: JobSpec) -> Added:
        """QueueError for a job that must not be queued as asked (a count of ten million, an
        `out_dir` that is no writable folder)."""
        check_job(spec)
        if spec.out_dir is not None:
            problem = unwritable(Path(spec.out_dir))
            if problem:
                raise QueueError(f"--out {spec.out_dir}: {problem}")
        items = expand(spec, self._rng)
        root = None if self.url else self.paths.out_root  # (shared: the dispatcher's folder)
        job = self.store.add_job(spec, items, root, user_at_host())
        return Added(job, len(items), self.lock.holder())

    def dispatcher(
        self,
        session: aiohttp.ClientSession,
        config: FleetConfig,
        who: str,
        on_failure: FailureListener | None = None,
    ) -> Dispatcher:
        """A dispatcher over the master and every enabled worker, once this process holds the
        queue's lock (QueueBusy names the holder otherwise)."""
        if not self.lock.acquire(who):
            raise QueueBusy(f"the queue is dispatched by {self.lock.holder() or 'another process'}")
        self.store.prune(time.time() - KEEP_DAYS * 86400)
        service = JobService(session, config)
        master, workers = service.participants()
        return Dispatcher(
            self.store,
            session,
            [master, *workers],
            service.preflight_one,
            on_failure,
            out_root=self.paths.out_root,
        )


def fleet_session(timeout: aiohttp.ClientTimeout) -> aiohttp.ClientSession:
    """For a dispatcher: one socket per participant stays open, so the connection pool has no
    cap (aiohttp's 100 would let a fleet of 100 starve every request)."""
    return aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=0))


async def when_free(
    queue: FleetQueue,
    session: aiohttp.ClientSession,
    config: FleetConfig,
    who: str,
    stop: asyncio.Event,
    waiting: Callable[[str], None],
    on_failure: FailureListener | None = None,
) -> Dispatcher | None:
    """The dispatcher once no other process (on any machine) dispatches the queue; until then
    `waiting` hears who does, when that changes. None when stopped first."""
    said = ""
    while not stop.is_set():
        try:
            return queue.dispatcher(session, config, who, on_failure)
        except QueueBusy as exc:
            if str(exc) != said:
                said = str(exc)
                waiting(said)
        seen = queue.store.data_version()
        pause = min(max(queue.lock.free_in(), 0.2), WAIT_S)
        while pause > 0 and not stop.is_set() and queue.store.data_version() == seen:
            await wait_or_stop(stop, min(pause, HELD_CHECK_S))  # (a lease given back: at once)
            pause -= HELD_CHECK_S
    return None


async def run_while_held(queue: FleetQueue, dispatcher: Dispatcher, stop: asyncio.Event) -> None:
    """Dispatch until `stop`; LeaseLost as soon as the lease may be another's (a network cut:
    the one that takes over reconciles what was out)."""
    inner = asyncio.Event()
    lost = False

    async def watch() -> None:
        nonlocal lost
        while not stop.is_set():
            if not queue.lock.held:
                lost = True
                break
            await wait_or_stop(stop, HELD_CHECK_S)
        inner.set()

    watching = asyncio.ensure_future(watch())
    try:
        await dispatcher.run(inner)
    finally:
        watching.cancel()
    if lost:
        raise LeaseLost("this process lost the queue's dispatcher lease")


async def dispatch_until(
    queue: FleetQueue,
    config: FleetConfig,
    who: str,
    stop: asyncio.Event,
    listener: Callable[[Dispatcher], None] | None = None,
    say: Callable[[str], None] = lambda text: None,
) -> None:
    """Dispatch until `stop`: waiting while another process does (`say` hears who), again after
    losing the lease; the lock is given back however it ends."""
    async with fleet_session(aiohttp.ClientTimeout(total=None, sock_connect=5)) as session:
        waited: list[str] = []

        def waiting(text: str) -> None:
            waited.append(text)
            say(f"waiting: {text}")

        async def turn(dispatcher: Dispatcher) -> None:
            if waited:
                say("dispatching here now")
            if listener is not None:
                tell(dispatcher, listener)
            await run_while_held(queue, dispatcher, stop)

        await take_turns(
            queue, session, config, who, stop, waiting, turn,
            lambda exc: say(f"{exc}; waiting to dispatch again"),
        )  # fmt: skip


async def take_turns(
    queue: FleetQueue,
    session: aiohttp.ClientSession,
    config: FleetConfig,
    who: str,
    stop: asyncio.Event,
    waiting: Callable[[str], None],
    turn: Callable[[Dispatcher], Awaitable[None]],
    lost: Callable[[LeaseLost], None],
    on_failure: FailureListener | None = None,
) -> None:
    """Until `stop`: wait while another process (on any machine) holds the queue (`waiting`
    hears who), run `turn` with the dispatcher once this one does, and wait again after losing
    the lease (`lost` hears it, from the turn or any task of its group); the lock is given
    back however a turn ends."""
    while not stop.is_set():
        dispatcher = await when_free(queue, session, config, who, stop, waiting, on_failure)
        if dispatcher is None:
            return
        try:
            await turn(dispatcher)
        except* LeaseLost as group:
            lost(group.exceptions[0])  # type: ignore[arg-type]
        finally:
            queue.lock.release()


def open_fleet_queue(paths: AppPaths, config: FleetConfig, flag: str | None = None) -> FleetQueue:
    """The queue this process uses: on the server `--queue-url`, COMFY_FLEET_QUEUE_URL or the
    settings name, else the local file (QueueUrlError, QueueStoreError in words)."""
    url = chosen_queue_url(flag, os.environ.get(QUEUE_URL_ENV), config.app.queue_url)
    return FleetQueue(QueuePaths.under(paths.data_dir), url=url)


def tell(dispatcher: Dispatcher, listener: Callable[[Dispatcher], None]) -> None:
    """`listener` after every change, and now, as it starts (nothing may change for a while)."""
    dispatcher.subscribe(lambda: listener(dispatcher))
    listener(dispatcher)


def queue_wait(jobs: Sequence[Job], now: float) -> tuple[int, float | None]:
    """Items waiting in the queue's `jobs`, and the seconds until the last one is expected done
    (what the elastic policy looks at)."""
    running = [j for j in jobs if not j.ended]
    etas = [e for j in running if (e := j.eta_s(now)) is not None]
    return sum(j.count(ItemState.QUEUED) for j in running), max(etas, default=None)


def queue_has_work(store: QueueDb, dispatcher: Dispatcher | None, worker: str) -> bool:
    """The queue has items out on `worker`, or waiting ones it may take."""
    lane = dispatcher.lanes.get(worker) if dispatcher is not None else None
    if lane is not None and lane.out:
        return True
    jobs = {item.job for item in store.waiting(100)}  # the first waiting jobs are enough
    return any(
        (names := store.job_brief(job).workers) is None
        or worker.casefold() in {n.casefold() for n in names}
        for job in jobs
    )
