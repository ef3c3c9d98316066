"""Moving a desktop's local queue onto a team's PostgreSQL server, nothing lost: every job and
item as it is (states, tries, where it runs), in one transaction; the local file is kept, marked
as moved, so that no process queues into it or dispatches it again."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass

from app.services.queue_db import QueueDb, QueueStoreError
from app.services.queue_lock import DispatcherLock
from app.services.queue_store import QueueStore

WHO = "`comfy-fleet queue migrate`"


@dataclass(frozen=True)
class Moved:
    jobs: int
    items: int
    ids: dict[int, int]  # local job id -> its id on the server


def migrate(source: QueueStore, lock: DispatcherLock, target: QueueDb) -> Moved:
    """QueueStoreError (nothing moved) while a process here dispatches the local queue, or
    when the server refuses; what the server holds is counted before the file is marked."""
    if not lock.acquire(WHO):
        raise QueueStoreError(
            f"the local queue is dispatched by {lock.holder() or 'another process'}: stop it"
            " (close the window) first, so that nothing changes while it moves"
        )
    try:
        dump = source.dump()
        ids = target.load(dump)
        wanted = Counter(ids[row[0]] for row in dump.items)
        held = {job.id: job.total for job in target.jobs(list(ids.values()))}
        if held != {job: wanted.get(job, 0) for job in ids.values()}:
            raise QueueStoreError(
                f"the server does not hold every job and item it was given ({len(held)} of"
                f" {len(ids)} jobs): the local queue stays in use"
            )
        source.mark_moved(f"{target.where} on {time.strftime('%Y-%m-%d %H:%M')}")
        return Moved(len(dump.jobs), len(dump.items), ids)
    finally:
        lock.release()
