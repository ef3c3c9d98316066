"""Watching the Runpod pods: they join and leave the fleet as they run and stop, and two guards
keep them off the user's money — a pod with no work for a while is stopped, and every pod is
stopped once today's spend reaches the daily budget. Each decision is said in words."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

from app.core.cloud import CloudSettings, Pod, money
from app.core.errors import ComfyFleetError
from app.services.runpod import RunpodClient
from app.services.tasks import wait_or_stop

log = logging.getLogger(__name__)


class CloudWatch:
    def __init__(
        self,
        client: Callable[[], RunpodClient | None],
        settings: Callable[[], CloudSettings],
        on_pods: Callable[[list[Pod]], None],
        has_work: Callable[[Pod], bool],
        on_decision: Callable[[str], None],
        clock: Callable[[], float] = time.monotonic,
        queue_wait: Callable[[], tuple[int, float | None]] = lambda: (0, None),
    ) -> None:
        """`client`: None while no API key is stored; `has_work`: the queue has items out or
        waiting for the pod, or its ComfyUI queue is not empty; `queue_wait`: the items
        waiting in the queue and the seconds expected until they are done."""
        self._queue_wait = queue_wait
        self._client, self._settings = client, settings
        self._on_pods, self._has_work, self._on_decision = on_pods, has_work, on_decision
        self._clock = clock
        self.pods: list[Pod] = []
        self.today_usd = 0.0
        self.problem = ""
        self.decisions: list[str] = []
        self._busy_at: dict[str, float] = {}  # pod id → when it last had work (or started)

    @property
    def cost_per_h(self) -> float:
        return sum(p.cost_per_h for p in self.pods)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.tick()
            except Exception as exc:  # the watch goes on; what went wrong is said
                log.exception("reading the pods failed")
                self.problem = f"reading the pods failed: {exc}"
            await wait_or_stop(stop, self._settings().poll_s)

    async def tick(self) -> None:
        client = self._client()
        if client is None:
            return
        try:
            self.pods = await client.pods()
            self.problem = ""
        except ComfyFleetError as exc:
            self.problem = str(exc)
            return
        self._on_pods(self.pods)
        settings = self._settings()
        try:
            await self._budget(client, settings)
            await self._idle(client, settings)
            await self._elastic(client, settings)
        except ComfyFleetError as exc:
            self.problem = str(exc)

    async def _budget(self, client: RunpodClient, settings: CloudSettings) -> None:
        if settings.daily_budget_usd <= 0:
            return
        midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        self.today_usd = (await client.pod_costs(midnight.timestamp())).total
        billing = [p for p in self.pods if "stop" in p.actions]
        if self.today_usd < settings.daily_budget_usd or not billing:
            return
        for pod in billing:
            await client.act(pod.id, "stop")
        self._decide(
            f"daily budget {money(settings.daily_budget_usd)} reached "
            f"({money(self.today_usd)} spent today): stopped {', '.join(p.name for p in billing)}"
        )

    async def _idle(self, client: RunpodClient, settings: CloudSettings) -> None:
        if settings.idle_stop_min <= 0:
            return
        now = self._clock()
        running = {p.id: p for p in self.pods if p.status == "RUNNING"}
        self._busy_at = {i: t for i, t in self._busy_at.items() if i in running}
        for pod_id, pod in running.items():
            if pod_id not in self._busy_at or self._has_work(pod):
                self._busy_at[pod_id] = now
                continue
            idle_s = now - self._busy_at[pod_id]
            if idle_s >= settings.idle_stop_min * 60:
                await client.act(pod_id, "stop")
                del self._busy_at[pod_id]
                self._decide(
                    f"stopped {pod.name}: no work for it for {idle_s / 60:.0f} min "
                    f"(it cost {money(pod.cost_per_h)}/h)"
                )

    async def _elastic(self, client: RunpodClient, settings: CloudSettings) -> None:
        """More GPUs while the queue waits too long: one pod at a time, until it runs."""
        if not settings.elastic:
            return
        waiting, eta_s = self._queue_wait()
        if not waiting or eta_s is None or eta_s < settings.elastic_wait_min * 60:
            return
        billing = [p for p in self.pods if p.cost_per_h > 0]
        if any(p.status in ("PROVISIONING", "STARTING") for p in billing):
            return  # the last one started is not up yet
        over = settings.daily_budget_usd > 0 and self.today_usd >= settings.daily_budget_usd
        if len(billing) >= settings.elastic_max_pods or over:
            return
        why = f"{waiting} items queued, {eta_s / 60:.0f} min expected"
        stopped = next((p for p in self.pods if "start" in p.actions), None)
        if stopped is not None:
            await client.act(stopped.id, "start")
            self._decide(f"started {stopped.name}: {why}")
        else:
            made = await client.create(settings.recipe, f"comfyfleet-{time.strftime('%H%M%S')}")
            self._decide(f"rented {made.name} ({made.gpu_type}, {money(made.cost_per_h)}/h): {why}")
        self.pods = await client.pods()
        self._on_pods(self.pods)

    def _decide(self, text: str) -> None:
        log.info("cloud: %s", text)
        self.decisions.append(text)
        self._on_decision(text)
