"""The fleet queue as a use case: queue a job, and dispatch (one process at a time) — the same
for the window, `up` and `queue run`."""

from __future__ import annotations

import asyncio
import getpass
import os
import random
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from app.core.config import FleetConfig
from app.core.errors import ComfyFleetError
from app.core.queue import ItemState, JobSpec, QueueError, check_job, expand
from app.services.dispatcher import Dispatcher
from app.services.job_service import JobService
from app.services.queue_store import DispatcherLock, Job, QueueStore
from app.services.storage import unwritable
from app.services.tasks import FailureListener

KEEP_DAYS = 30.0  # ended jobs leave the DB after this long (their files stay)


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


@dataclass(frozen=True)
class Added:
    job: int
    items: int
    dispatcher: str | None  # who will run it, None when nobody dispatches now


class FleetQueue:
    def __init__(self, paths: QueuePaths, rng: random.Random | None = None) -> None:
        self.paths = paths
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
        job = self.store.add_job(spec, items, self.paths.out_root, who_queues())
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
            self.store, session, [master, *workers], service.preflight_one, on_failure
        )


async def dispatch_until(
    queue: FleetQueue,
    config: FleetConfig,
    who: str,
    stop: asyncio.Event,
    listener: Callable[[Dispatcher], None] | None = None,
) -> None:
    """Hold the lock and dispatch until `stop`; the lock is given back however it ends."""
    async with aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=5)
    ) as session:
        dispatcher = queue.dispatcher(session, config, who)
        try:
            if listener is not None:
                dispatcher.subscribe(lambda: listener(dispatcher))
                listener(dispatcher)  # as it starts: nothing may change for a while
            await dispatcher.run(stop)
        finally:
            queue.lock.release()


def queue_wait(jobs: Sequence[Job], now: float) -> tuple[int, float | None]:
    """Items waiting in the queue's `jobs`, and the seconds until the last one is expected done
    (what the elastic policy looks at)."""
    running = [j for j in jobs if not j.ended]
    etas = [e for j in running if (e := j.eta_s(now)) is not None]
    return sum(j.count(ItemState.QUEUED) for j in running), max(etas, default=None)


def queue_has_work(store: QueueStore, dispatcher: Dispatcher | None, worker: str) -> bool:
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


def who_queues() -> str:
    """user@host: shown beside a job on every desktop that shares the queue."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # (no name for this uid, e.g. in a container)
        user = f"uid {os.getuid()}" if hasattr(os, "getuid") else "someone"
    return f"{user}@{socket.gethostname()}"
