"""Live health of every enabled instance, probed concurrently through one HTTP client."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from app.core.config import FleetConfig, WorkerKind
from app.core.health import ProbeSchedule, WorkerHealth, WorkerState, apply_probe
from app.core.net import base_url
from app.services.comfy_client import ComfyClient

log = logging.getLogger(__name__)
HealthListener = Callable[[WorkerHealth], None]
SLOT_S = 0.1


@dataclass(frozen=True)
class MonitorTarget:
    name: str
    kind: str  # master, local, remote, cloud
    url: str
    enabled: bool = True


def targets_from_config(config: FleetConfig) -> list[MonitorTarget]:
    master = config.master
    targets = [MonitorTarget("master", "master", base_url(master.host, master.port))]
    for worker in config.workers:
        cloud = worker.kind is WorkerKind.CLOUD
        url = base_url(worker.host, worker.port, cloud)
        targets.append(MonitorTarget(worker.name, worker.kind.value, url, worker.enabled))
    return targets


def initial_health(target: MonitorTarget) -> WorkerHealth:
    state = WorkerState.STARTING if target.enabled else WorkerState.DISABLED
    return WorkerHealth(target.name, target.kind, target.url, state)


class FleetMonitor:
    """One probing task per enabled target; listeners hear every new health."""

    def __init__(
        self,
        client: ComfyClient,
        schedule: ProbeSchedule | None = None,
        clock: Callable[[], float] = time.time,
        seed: int | None = None,
    ) -> None:
        self._client = client
        self._schedule = schedule or ProbeSchedule()
        self._clock = clock
        self._rng = random.Random(seed)
        self._targets: list[MonitorTarget] = []
        self._health: dict[str, WorkerHealth] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._wake: dict[str, asyncio.Event] = {}
        self._listeners: list[HealthListener] = []

    def subscribe(self, listener: HealthListener) -> None:
        self._listeners.append(listener)

    def snapshot(self) -> list[WorkerHealth]:
        return [self._health[t.name] for t in self._targets]

    def health(self, name: str) -> WorkerHealth | None:
        return self._health.get(name)

    def set_targets(self, targets: list[MonitorTarget]) -> None:
        """Start, keep or stop probing so that exactly these targets are watched."""
        wanted = {t.name: t for t in targets}
        for name in list(self._tasks):
            old = next(t for t in self._targets if t.name == name)
            if wanted.get(name) != old:
                self._tasks.pop(name).cancel()
                self._health.pop(name, None)
        self._targets = list(targets)
        for target in targets:
            if target.name not in self._health:
                self._publish(initial_health(target))
            if target.enabled and target.name not in self._tasks:
                self._wake[target.name] = asyncio.Event()
                self._tasks[target.name] = asyncio.create_task(self._watch(target))

    def probe_now(self, name: str | None = None) -> None:
        """Re-probe at once (user action), skipping any backoff."""
        for key, event in self._wake.items():
            if name is None or key == name:
                event.set()

    async def stop(self) -> None:
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def probe_all_once(self, targets: list[MonitorTarget]) -> list[WorkerHealth]:
        """One concurrent round, for `status` without --watch."""

        async def one(target: MonitorTarget) -> WorkerHealth:
            health = initial_health(target)
            if not target.enabled:
                return health
            return apply_probe(health, await self._client.probe(target.url), self._clock())

        return list(await asyncio.gather(*(one(t) for t in targets)))

    async def _watch(self, target: MonitorTarget) -> None:
        misses = 0
        wake = self._wake[target.name]
        # spread the first probes so 200 workers do not fire in the same millisecond
        await self._sleep(wake, self._rng.uniform(0, 0.1))
        while True:
            result = await self._client.probe(target.url)
            misses = 0 if result.ok else misses + 1
            previous = self._health.get(target.name, initial_health(target))
            self._publish(apply_probe(previous, result, self._clock()))
            await self._sleep(
                wake, self._schedule.next_delay(self._health[target.name], misses, self._rng)
            )

    @staticmethod
    async def _sleep(wake: asyncio.Event, seconds: float) -> None:
        # Wake on 100 ms slots: probes due in the same slot share one loop wake-up, which
        # costs less CPU than 200 separate wake-ups a second (the jitter survives the rounding).
        loop = asyncio.get_running_loop()
        due = math.ceil((loop.time() + seconds) / SLOT_S) * SLOT_S
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout_at(due):
                await wake.wait()
        wake.clear()

    def _publish(self, health: WorkerHealth) -> None:
        self._health[health.name] = health
        for listener in self._listeners:
            try:
                listener(health)
            except Exception:  # a broken listener must not stop the monitor
                log.exception("health listener failed")
