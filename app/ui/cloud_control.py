"""The window's Runpod side: the key in the keyring, the pods watched (joining and leaving the
fleet, the guards), the panel's actions, and what Quit must know of pods still billing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any

import aiohttp

from app.core.cloud import Pod, PodRecipe, money
from app.core.cloud_fleet import with_pods, worker_of_pod
from app.core.errors import ComfyFleetError, SecretStoreError
from app.services.cloud_watch import CloudWatch
from app.services.runpod import API_KEY, GpuType, RunpodClient
from app.services.secrets import SecretStore
from app.ui.cloud_panel import CloudPanel
from app.ui.config_keeper import ConfigKeeper


class CloudControl:
    def __init__(
        self,
        keeper: ConfigKeeper,
        session: Callable[[], aiohttp.ClientSession],
        spawn: Callable[[Coroutine[Any, Any, None], str], object],
        notify: Callable[[str], None],
        worker_has_work: Callable[[str], bool],
        secrets: SecretStore | None = None,
        on_cost: Callable[[str], None] = lambda text: None,
        queue_wait: Callable[[], tuple[int, float | None]] = lambda: (0, None),
    ) -> None:
        """`on_cost`: what the pods billing cost now, in words ("" when none bills);
        `queue_wait`: items waiting in the queue and the seconds expected (the elastic policy)."""
        self._keeper, self._session, self._notify = keeper, session, notify
        self._on_cost = on_cost
        self._worker_has_work = worker_has_work
        self.secrets = secrets or SecretStore()
        self._key: str | None = None
        self._key_read = False
        self._session_usd, self._last_tick = 0.0, time.monotonic()
        self.panel = CloudPanel(spawn, self, lambda: keeper.config.cloud.recipe)
        self.watch = CloudWatch(
            self._client,
            lambda: keeper.config.cloud,
            self._pods_seen,
            self._has_work,
            notify,
            queue_wait=queue_wait,
        )

    # the key

    def _stored_key(self) -> str | None:
        if not self._key_read:
            try:
                self._key = self.secrets.get(API_KEY)
            except SecretStoreError:
                self._key = None
            self._key_read = True
        return self._key

    def _client(self, key: str | None = None) -> RunpodClient | None:
        key = key or self._stored_key()
        if not key:
            return None
        return RunpodClient(self._session(), key, self._keeper.config.cloud.runpod_api_url)

    def _needed(self) -> RunpodClient:
        client = self._client()
        if client is None:
            raise ComfyFleetError("log in to Runpod first")
        return client

    # what the watch sees

    def _pods_seen(self, pods: list[Pod]) -> None:
        now = time.monotonic()
        self._session_usd += sum(p.cost_per_h for p in pods) * (now - self._last_tick) / 3600
        self._last_tick = now
        config = self._keeper.config
        joined = with_pods(config, pods, config.cloud.runpod_proxy)
        if joined is not config:
            self._keeper.apply(joined)
        self.show()

    def _has_work(self, pod: Pod) -> bool:
        worker = worker_of_pod(self._keeper.config, pod)
        return worker is not None and self._worker_has_work(worker.name)

    def billing(self) -> list[Pod]:
        return [p for p in self.watch.pods if p.cost_per_h > 0]

    def show(self) -> None:
        logged_in = self._stored_key() is not None
        if not logged_in:
            summary = "Runpod: not logged in. Log in to rent GPUs that join the fleet."
        elif self.watch.problem:
            summary = f"Runpod: {self.watch.problem}"
        else:
            pods = self.watch.pods
            summary = (
                f"Runpod: {len(pods)} pod(s), {money(self.watch.cost_per_h)}/h now · "
                f"this session about {money(self._session_usd)}"
                + (f" · today {money(self.watch.today_usd)}" if self.watch.today_usd else "")
            )
        self.panel.show_pods(self.watch.pods, summary, self.watch.decisions, logged_in)
        billing = self.billing()
        self._on_cost(
            f"{len(billing)} pod(s) {money(sum(p.cost_per_h for p in billing))}/h"
            if billing
            else ""
        )

    async def run(self, stop: asyncio.Event) -> None:
        self.show()
        await self.watch.run(stop)

    async def refresh(self) -> None:
        await self.watch.tick()
        self.show()

    # the panel's actions

    async def login(self, key: str) -> str:
        client = self._client(key)
        assert client is not None
        pods = await client.pods()  # a key Runpod refuses is not stored
        self.secrets.set(API_KEY, key)
        self._key, self._key_read = key, True
        await self.refresh()
        return f"Stored the Runpod API key in the system keyring ({len(pods)} pod(s))."

    async def act(self, pod: Pod, verb: str) -> None:
        await self._needed().act(pod.id, verb)
        await self.refresh()

    async def create(self, recipe: PodRecipe, name: str) -> None:
        made = await self._needed().create(recipe, name or f"comfyfleet-{time.strftime('%H%M%S')}")
        self.panel.say(f"Rented {made.name}: {made.status.lower()}, {money(made.cost_per_h)}/h")
        await self.refresh()

    async def gpu_types(self) -> list[GpuType]:
        return await self._needed().gpu_types()

    async def logs(self, pod: Pod) -> list[str]:
        return await self._needed().logs(pod.id)

    async def stop_all(self, pods: list[Pod]) -> None:
        client = self._needed()
        for pod in pods:
            await client.act(pod.id, "stop")
