"""Live health of every enabled instance, probed concurrently through one HTTP client."""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from app.core.cloud_fleet import is_pod
from app.core.config import FleetConfig
from app.core.health import (
    Failure,
    ProbeError,
    ProbeResult,
    ProbeSchedule,
    WorkerHealth,
    WorkerState,
    apply_probe,
)
from app.services.comfy_client import (
    ComfyClient,
    bad_address,
    classify,
    probe_result,
    probe_urls,
)
from app.services.probe_http import Answer, Outcome

log = logging.getLogger(__name__)
HealthListener = Callable[[WorkerHealth], None]
SLOT_S = 0.1


@dataclass(frozen=True)
class MonitorTarget:
    name: str
    kind: str  # master, local, remote, cloud
    url: str
    enabled: bool = True
    pod: bool = False  # a Runpod pod's ComfyUI, through Runpod's proxy


def targets_from_config(config: FleetConfig) -> list[MonitorTarget]:
    targets = [MonitorTarget("master", "master", config.master.url)]
    for worker in config.workers:
        targets.append(
            MonitorTarget(
                worker.name, worker.kind.value, worker.url, worker.enabled, is_pod(worker)
            )
        )
    return targets


def initial_health(target: MonitorTarget) -> WorkerHealth:
    state = WorkerState.STARTING if target.enabled else WorkerState.DISABLED
    return WorkerHealth(target.name, target.kind, target.url, state)


class _Watch:
    """One target's schedule and, while it runs, its probe."""

    __slots__ = ("due", "misses", "probe", "target", "tls", "urls")

    def __init__(self, target: MonitorTarget, due: float) -> None:
        self.target = target
        self.urls = probe_urls(target.url)
        self.tls = target.url.startswith("https:")
        self.due = due
        self.misses = 0
        self.probe: _Probe | None = None


class _Probe:
    """A probe's two GETs, answered by callbacks: no task, future or timer of its own.

    Plain HTTP: both on one connection, pipelined (one write, often one read). HTTPS goes
    through proxies (Runpod, Cloudflare), which may not answer pipelined requests: there the
    second GET follows the first on the same kept-alive connection. (Two connections at once
    meant two name look-ups, and a failed one left the other's error unread: uvloop logged
    "Future exception was never retrieved" for each probe of an unresolvable host.)
    """

    __slots__ = ("answers", "deadline", "monitor", "requests", "started", "watch")

    def __init__(self, monitor: FleetMonitor, watch: _Watch, deadline: float) -> None:
        self.monitor = monitor
        self.watch = watch
        self.deadline = deadline
        self.answers: list[Answer | None] = [None, None]
        self.started = time.perf_counter()
        http = monitor.client.probe_http
        if watch.tls:
            self.requests = [http.request(watch.urls[:1], functools.partial(self._one, 0))]
        else:
            self.requests = [http.request(watch.urls, self._both)]

    def _both(self, outcome: Outcome) -> None:
        if self.watch.probe is not self:
            return  # already finished (timed out, failed, or the target went away)
        if isinstance(outcome, BaseException):
            self.finish(ProbeResult(error=classify(outcome)))
            return
        self._read(outcome[0], outcome[1])

    def _one(self, index: int, outcome: Outcome) -> None:
        if self.watch.probe is not self:
            return
        if isinstance(outcome, BaseException):
            self.finish(ProbeResult(error=classify(outcome)))
            return
        self.answers[index] = outcome[0]
        stats, queue = self.answers
        if stats is not None and queue is not None:
            self._read(stats, queue)
        elif index == 0:  # the queue next, on the connection the first GET left idle
            http = self.monitor.client.probe_http
            self.requests = [http.request(self.watch.urls[1:], functools.partial(self._one, 1))]

    def _read(self, stats: Answer, queue: Answer) -> None:
        latency = (time.perf_counter() - self.started) * 1000
        self.finish(probe_result(self.watch.urls, stats, queue, latency))

    def cancel(self) -> None:
        for request in self.requests:
            request.cancel()

    def finish(self, result: ProbeResult) -> None:
        self.watch.probe = None
        if result.error is not None:
            self.cancel()  # the other GET's connection is no good either
        self.monitor.probed(self.watch, result)


class FleetMonitor:
    """Probes every enabled target on its schedule; listeners hear every new health.

    One timer ticks every 100 ms slot and starts the probes that are due, so 200 workers cost
    ten wake-ups a second, not four hundred; answers and timeouts are handled by callbacks.
    """

    def __init__(
        self,
        client: ComfyClient,
        schedule: ProbeSchedule | None = None,
        clock: Callable[[], float] = time.time,
        seed: int | None = None,
    ) -> None:
        self.client = client
        self._schedule = schedule or ProbeSchedule()
        self._clock = clock
        self._rng = random.Random(seed)
        self._targets: list[MonitorTarget] = []
        self._health: dict[str, WorkerHealth] = {}
        self._watches: dict[str, _Watch] = {}
        self._ticker: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
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
        for name in list(self._watches):
            if wanted.get(name) != self._watches[name].target:
                self._drop(name)
                self._health.pop(name, None)
        for name in list(self._health):
            if name not in wanted:
                self._health.pop(name)
        self._targets = list(targets)
        loop = self._loop = asyncio.get_running_loop()
        for target in targets:
            if target.name not in self._health:
                self._publish(initial_health(target))
            if target.enabled and target.name not in self._watches:
                # spread the first probes so 200 workers do not fire in the same millisecond
                due = loop.time() + self._rng.uniform(0, SLOT_S)
                self._watches[target.name] = _Watch(target, due)
        if self._watches and self._ticker is None:
            self._ticker = loop.call_at(self._next_slot(loop.time()), self._tick)

    def _drop(self, name: str) -> None:
        watch = self._watches.pop(name)
        if watch.probe is not None:
            watch.probe.cancel()
            watch.probe = None

    def probe_now(self, name: str | None = None) -> None:
        """Re-probe in the next slot (user action), skipping any backoff."""
        for key, watch in self._watches.items():
            if name is None or key == name:
                watch.due = 0.0

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        for name in list(self._watches):
            self._drop(name)

    async def probe_all_once(self, targets: list[MonitorTarget]) -> list[WorkerHealth]:
        """One concurrent round, for `status` without --watch."""

        async def one(target: MonitorTarget) -> WorkerHealth:
            health = initial_health(target)
            if not target.enabled:
                return health
            result = await self.client.probe(target.url)
            return apply_probe(health, result, self._clock(), pod=target.pod)

        return list(await asyncio.gather(*(one(t) for t in targets)))

    @staticmethod
    def _next_slot(now: float) -> float:
        return (math.floor(now / SLOT_S) + 1) * SLOT_S

    def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        timeout = self.client.timeout_s
        try:
            for watch in list(self._watches.values()):
                self._step(watch, now, timeout)
        finally:  # whatever one watch did, the others are probed on
            self._ticker = loop.call_at(self._next_slot(now), self._tick) if self._watches else None

    def _step(self, watch: _Watch, now: float, timeout: float) -> None:
        probe = watch.probe
        try:
            if probe is None:
                if watch.due <= now:
                    watch.probe = _Probe(self, watch, now + timeout)
            elif now >= probe.deadline:
                probe.finish(ProbeResult(error=ProbeError(Failure.TIMEOUT, "no answer in time")))
        except ValueError as exc:  # an address no request can be made of: this worker alone
            watch.probe = None
            self.probed(watch, ProbeResult(error=bad_address(exc)))
        except Exception:
            watch.probe = None
            log.exception("probing %s failed", watch.target.name)
            watch.due = now + self._schedule.offline_max_s

    def probed(self, watch: _Watch, result: ProbeResult) -> None:
        if self._watches.get(watch.target.name) is not watch:
            return
        watch.misses = 0 if result.ok else watch.misses + 1
        name = watch.target.name
        previous = self._health.get(name) or initial_health(watch.target)
        health = apply_probe(previous, result, self._clock(), watch.misses, watch.target.pod)
        self._publish(health)
        delay = self._schedule.next_delay(health, watch.misses, self._rng)
        assert self._loop is not None  # (get_running_loop costs a getpid() per call)
        watch.due = self._loop.time() + delay

    def _publish(self, health: WorkerHealth) -> None:
        self._health[health.name] = health
        for listener in self._listeners:
            try:
                listener(health)
            except Exception:  # a broken listener must not stop the monitor
                log.exception("health listener failed")
