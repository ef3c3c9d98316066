"""The fleet monitor on its own event loop in a thread, for the desktop app.

Under qasync every asyncio callback becomes a Qt timer event; 200 workers probed every second
made that the app's main CPU cost. Here the probes run on a plain asyncio loop (uvloop where it
is installed) and the GUI collects the news with `drain()` from its own timer. Every method
but `drain`, `snapshot` and `health` hands work to the monitor's loop; none blocks the caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import Callable

from app.core.health import ProbeSchedule, WorkerHealth
from app.services.comfy_client import ComfyClient
from app.services.monitor import FleetMonitor, MonitorTarget, initial_health

log = logging.getLogger(__name__)


def new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class MonitorThread:
    def __init__(self, schedule: ProbeSchedule | None = None) -> None:
        self._schedule = schedule
        self._news: queue.SimpleQueue[WorkerHealth] = queue.SimpleQueue()
        self._latest: dict[str, WorkerHealth] = {}
        self._targets: list[MonitorTarget] = []
        self._names: set[str] = set()
        self._loop = new_loop()
        self._started = threading.Event()
        self._monitor: FleetMonitor | None = None
        self._client: ComfyClient | None = None
        self._thread = threading.Thread(target=self._run, name="fleet-monitor", daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._started.wait()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._client = ComfyClient()  # its own: connections belong to one event loop
        self._monitor = FleetMonitor(self._client, self._schedule)
        self._monitor.subscribe(self._news.put)
        self._loop.call_soon(self._monitor.set_targets, self._targets)  # set before the start
        self._started.set()
        try:
            self._loop.run_forever()
        finally:
            self._loop.close()

    def set_targets(self, targets: list[MonitorTarget]) -> None:
        self._targets = list(targets)
        self._names = {t.name for t in targets}
        for target in targets:  # the table shows them at once, before the first probe
            self._latest.setdefault(target.name, initial_health(target))
        self._latest = {n: h for n, h in self._latest.items() if n in self._names}
        self._call(lambda monitor: monitor.set_targets(targets))

    def probe_now(self, name: str | None = None) -> None:
        self._call(lambda monitor: monitor.probe_now(name))

    def _call(self, action: Callable[[FleetMonitor], None]) -> None:
        monitor = self._monitor
        if monitor is None or self._loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop is stopping: nothing to do
            self._loop.call_soon_threadsafe(action, monitor)

    def drain(self) -> list[WorkerHealth]:
        """What changed since the last call, newest per worker (call from the GUI thread)."""
        batch: dict[str, WorkerHealth] = {}
        while True:
            try:
                health = self._news.get_nowait()
            except queue.Empty:
                break
            if health.name in self._names:
                batch[health.name] = health
        self._latest.update(batch)
        return list(batch.values())

    def snapshot(self) -> list[WorkerHealth]:
        return [self._latest.get(t.name) or initial_health(t) for t in self._targets]

    def health(self, name: str) -> WorkerHealth | None:
        return self._latest.get(name)

    async def stop(self) -> None:
        if not self._thread.is_alive() or self._monitor is None:
            return
        done = asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop)
        await asyncio.wrap_future(done)
        await asyncio.to_thread(self._thread.join, 5)

    async def _shutdown(self) -> None:
        assert self._monitor is not None and self._client is not None
        await self._monitor.stop()
        await self._client.close()
        asyncio.get_running_loop().stop()
