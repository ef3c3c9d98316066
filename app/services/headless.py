"""The fleet with no window: the queue dispatched to the whole fleet, rented pods joining and
leaving it, the cloud guards (idle, budget, elastic) — what `comfy-fleet service run` runs, so
money stays protected while every desktop is closed. systemd is told how it goes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import aiohttp

from app.core.cloud import Pod
from app.core.cloud_fleet import with_pods, worker_of_pod
from app.core.config import FleetConfig
from app.core.errors import SecretStoreError
from app.services.cloud_watch import CloudWatch
from app.services.dispatcher import Dispatcher
from app.services.job_service import JobService
from app.services.paths import AppPaths
from app.services.queue_service import (
    FleetQueue,
    fleet_session,
    open_fleet_queue,
    queue_has_work,
    queue_wait,
    run_while_held,
    take_turns,
)
from app.services.runpod import API_KEY, RunpodClient
from app.services.sd_notify import Notifier
from app.services.secrets import SecretStore
from app.services.storage import ConfigStore
from app.services.tasks import wait_or_stop

WHO = "comfy-fleet service"
SUMMARY_S = 5.0  # how often the status systemd shows is brought up to date


async def run_headless(
    paths: AppPaths,
    store: ConfigStore,
    config: FleetConfig,
    secrets: SecretStore,
    stop: asyncio.Event,
    say: Callable[[str], None],
    notifier: Notifier,
    queue_url: str | None = None,
) -> None:
    """Until `stop`; what it does is said in lines (`say`) and to systemd (`notifier`). While
    another process (on any machine) dispatches the queue it waits, and takes over when that
    one ends or dies."""
    queue = open_fleet_queue(paths, config, queue_url)
    try:
        key = secrets.get(API_KEY)
    except SecretStoreError as exc:
        key = None
        say(f"cloud guards off: {exc}")
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=5)
    status = ["starting"]

    def waiting(text: str) -> None:
        status[0] = f"waiting: {text}"
        say(status[0])
        notifier.notify(f"STATUS={status[0]}")

    notifier.notify("READY=1", "STATUS=starting")
    alive = asyncio.ensure_future(_alive(notifier, lambda: status[0], stop))
    try:
        async with fleet_session(timeout) as session:

            async def turn(dispatcher: Dispatcher) -> None:
                fleet = HeadlessFleet(queue, store, config, session, key, dispatcher, say)
                status[0] = fleet.summary()
                say(f"{WHO}: {status[0]}")
                async with asyncio.TaskGroup() as group:  # (a lost lease ends all three)
                    group.create_task(run_while_held(queue, dispatcher, stop))
                    group.create_task(fleet.watch.run(stop))
                    group.create_task(_summarise(fleet, status, stop))

            await take_turns(
                queue, session, config, WHO, stop, waiting, turn,
                lambda exc: say(f"{exc}; waiting to dispatch again"),
            )  # fmt: skip
    except Exception as exc:
        notifier.notify(f"STATUS=failed: {exc}")
        raise
    finally:
        alive.cancel()
        notifier.notify("STOPPING=1")
        queue.close()


async def _alive(notifier: Notifier, status: Callable[[], str], stop: asyncio.Event) -> None:
    """The watchdog's ping while the loop runs (waiting or dispatching), with the fleet in words."""
    if notifier.watchdog_s is None:
        return
    while not stop.is_set():
        notifier.notify("WATCHDOG=1", f"STATUS={status()}")
        await wait_or_stop(stop, notifier.watchdog_s)


async def _summarise(fleet: HeadlessFleet, status: list[str], stop: asyncio.Event) -> None:
    while not stop.is_set():
        status[0] = fleet.summary()
        await wait_or_stop(stop, SUMMARY_S)


class HeadlessFleet:
    """The dispatcher over the configured fleet and the pods that join it."""

    def __init__(
        self,
        queue: FleetQueue,
        store: ConfigStore,
        config: FleetConfig,
        session: aiohttp.ClientSession,
        key: str | None,
        dispatcher: Dispatcher,
        say: Callable[[str], None],
    ) -> None:
        self.queue, self.store, self.config, self.session = queue, store, config, session
        self.dispatcher = dispatcher
        self.watch = CloudWatch(
            lambda: RunpodClient(session, key, self.config.cloud.runpod_api_url) if key else None,
            lambda: self.config.cloud,
            self._pods_seen,
            self._has_work,
            lambda text: say(f"cloud: {text}"),
            queue_wait=lambda: queue_wait(queue.store.jobs(), time.time()),
        )

    def summary(self) -> str:
        waiting, _ = queue_wait(self.queue.store.jobs(), time.time())
        lanes = self.dispatcher.status()
        pods = f", {len(self.watch.pods)} pod(s)" if self.watch.pods else ""
        online = sum(lane.online for lane in lanes)
        return f"{online}/{len(lanes)} participant(s) online, {waiting} waiting{pods}"

    def _pods_seen(self, pods: list[Pod]) -> None:
        joined = with_pods(self.config, pods, self.config.cloud.runpod_proxy)
        if joined is self.config:
            return
        self.config = joined
        self.store.save(joined)  # (the window shows them too when it opens)
        master, workers = JobService(self.session, joined).participants()
        self.dispatcher.set_participants([master, *workers])

    def _has_work(self, pod: Pod) -> bool:
        worker = worker_of_pod(self.config, pod)
        return worker is not None and queue_has_work(self.queue.store, self.dispatcher, worker.name)
