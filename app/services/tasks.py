"""Background tasks that are owned: kept until done, cancelled together, and never failing
unseen (a failure is logged and handed to whoever shows it)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")
FailureListener = Callable[[str, BaseException], None]


class OwnedTasks:
    def __init__(self, on_failure: FailureListener | None = None) -> None:
        self._tasks: dict[asyncio.Task[Any], str] = {}
        self._on_failure = on_failure

    def spawn(self, coroutine: Coroutine[Any, Any, T], what: str) -> asyncio.Task[T]:
        """Run `coroutine` in the background; `what` names it in a failure's message.

        Only from a running loop: a task made before it would wait on a loop that never runs."""
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks[task] = what
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        what = self._tasks.pop(task, "a background task")
        if task.cancelled() or task.exception() is None:
            return
        error = task.exception()
        assert error is not None
        log.error("%s failed", what, exc_info=error)
        if self._on_failure is not None:
            self._on_failure(what, error)

    def __len__(self) -> int:
        return len(self._tasks)

    async def cancel_all(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def wait_or_stop(stop: asyncio.Event, seconds: float) -> None:
    """`seconds`, or less when `stop` is set meanwhile (a loop's pause that a stop cuts short)."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
