"""Runpod's REST v2 API on the app's aiohttp session (REFERENCE §8, shared/runpod/openapi-v2.json).

Every call carries the API key as a bearer token and ComfyFleet's own User-Agent; problems come
back as RunpodError with a sentence a user can act on. A 429 waits the Retry-After it names;
a 5xx or a dropped connection is tried again with backoff. A create whose answer was lost (5xx)
may still have made the pod: it is looked up by name before it is ever sent again, so a retry
never bills two pods. The key is never logged."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp

from app import __version__
from app.core.cloud import Pod, PodRecipe, problem_sentence
from app.core.errors import ComfyFleetError
from app.services.secrets import SecretStore

log = logging.getLogger(__name__)
USER_AGENT = f"ComfyFleet/{__version__}"
API_KEY = "cloud/runpod"  # its keyring entry
ATTEMPTS = 4
BACKOFF_S = 1.0
RETRY_AFTER_MAX_S = 60.0
NETWORK_ERRORS = (aiohttp.ClientConnectionError, TimeoutError, OSError)
Sleep = Callable[[float], Awaitable[None]]


class RunpodError(ComfyFleetError):
    def __init__(self, status: int, sentence: str) -> None:
        super().__init__(sentence)
        self.status = status


@dataclass(frozen=True)
class GpuType:
    id: str
    name: str
    memory_gb: int
    secure_per_h: float
    community_per_h: float


@dataclass(frozen=True)
class PodCosts:
    by_pod: dict[str, float]  # pod id → USD in the window
    total: float


def stored_key(secrets: SecretStore | None = None) -> str:
    key = (secrets or SecretStore()).get(API_KEY)
    if not key:
        raise ComfyFleetError("no Runpod API key: store one with `comfy-fleet cloud login runpod`")
    return key


class RunpodClient:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        api_key: str,
        base_url: str = "https://api.runpod.io",
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._session = session
        self._headers = {
            "Authorization": f"Bearer {api_key}",
            "User-Agent": USER_AGENT,
            "Accept": "application/json",
        }
        self.base_url = base_url.rstrip("/")
        self._sleep = sleep

    # pods

    async def pods(self) -> list[Pod]:
        data = await self._json("GET", "/v2/pods")
        return [Pod.from_api(p) for p in data.get("pods", [])]

    async def pod(self, pod_id: str) -> Pod:
        return Pod.from_api(await self._json("GET", f"/v2/pods/{pod_id}", what=f"pod {pod_id}"))

    async def create(self, recipe: PodRecipe, name: str) -> Pod:
        """A new pod; after a lost answer (5xx, a dropped connection) the pod of that name, if
        Runpod made it after all, instead of a second one."""
        body = recipe.body(name)
        for attempt in range(1, ATTEMPTS + 1):
            try:
                return Pod.from_api(await self._json("POST", "/v2/pods", body, retry=False))
            except _Transient as exc:
                made = [p for p in await self.pods() if p.name == name]
                if made:
                    log.info("Runpod made pod %s although its answer was lost", made[0].id)
                    return made[0]
                if attempt == ATTEMPTS:
                    raise RunpodError(exc.status, exc.sentence) from None
                await self._sleep(BACKOFF_S * 2 ** (attempt - 1))
        raise AssertionError("unreachable")

    async def act(self, pod_id: str, action: str) -> Pod | None:
        """start, stop, restart or terminate; the pod as it is now (None once terminated)."""
        data = await self._json(
            "POST", f"/v2/pods/{pod_id}/action", {"action": action}, what=f"{action} {pod_id}"
        )
        return None if data is None else Pod.from_api(data)

    async def logs(self, pod_id: str, tail: int = 100) -> list[str]:
        status, text, _ = await self._send(
            "GET", f"/v2/pods/{pod_id}/logs", params={"tail": str(tail)}, stream=True
        )
        if status != 200:
            raise RunpodError(status, problem_sentence(status, _parsed(text), f"pod {pod_id}"))
        lines = []
        for line in text.splitlines():
            if line.startswith("data:"):
                event = _parsed(line[5:].strip())
                lines.append(str(event.get("line", "")) if isinstance(event, dict) else line[5:])
        return lines

    # catalog and money

    async def gpu_types(self) -> list[GpuType]:
        data = await self._json("GET", "/v2/catalog/gpus")
        return [
            GpuType(
                str(g["id"]),
                str(g.get("name", g["id"])),
                int(g.get("memory", 0)),
                float((g.get("price") or {}).get("secure", 0.0)),
                float((g.get("price") or {}).get("community", 0.0)),
            )
            for g in data.get("gpus", [])
        ]

    async def pod_costs(self, since: float, until: float | None = None) -> PodCosts:
        params = {"startTime": _iso(since), "endTime": _iso(until or time.time())}
        data = await self._json("GET", "/v2/billing/pods", params=params)
        by_pod: dict[str, float] = {}
        for record in data.get("records", []):
            pod_id = str(record.get("podId"))
            by_pod[pod_id] = by_pod.get(pod_id, 0.0) + float(record.get("totalAmount", 0.0))
        total = float(((data.get("metadata") or {}).get("totals") or {}).get("totalAmount", 0.0))
        return PodCosts(by_pod, total)

    # the wire

    async def _json(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
        retry: bool = True,
        what: str = "that",
    ) -> Any:
        attempt = 0
        while True:
            attempt += 1
            try:
                status, text, headers = await self._send(method, path, body, params)
            except NETWORK_ERRORS as exc:
                problem = _Transient(0, f"Runpod could not be reached: {exc or type(exc).__name__}")
            else:
                if status == 429 and attempt < ATTEMPTS:
                    await self._sleep(_retry_after(headers))
                    continue
                if status < 500 or status == 501:
                    if status >= 400:
                        raise RunpodError(status, problem_sentence(status, _parsed(text), what))
                    return _parsed(text) if text else None
                problem = _Transient(status, problem_sentence(status, _parsed(text), what))
            if not retry:
                raise problem
            if attempt >= ATTEMPTS:
                raise RunpodError(problem.status, f"{problem.sentence} (tried {attempt} times)")
            await self._sleep(BACKOFF_S * 2 ** (attempt - 1))

    async def _send(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
        stream: bool = False,
    ) -> tuple[int, str, dict[str, str]]:
        request_id = uuid.uuid4().hex[:8]
        log.debug("runpod %s %s %s", request_id, method, path)  # never the headers (the key)
        async with self._session.request(
            method,
            f"{self.base_url}{path}",
            json=body,
            params=params,
            headers=self._headers,
            timeout=aiohttp.ClientTimeout(total=30 if not stream else 60),
        ) as response:
            text = await response.text()
            return response.status, text, dict(response.headers)


class _Transient(Exception):
    def __init__(self, status: int, sentence: str) -> None:
        super().__init__(sentence)
        self.status, self.sentence = status, sentence


def _retry_after(headers: dict[str, str]) -> float:
    try:
        return min(RETRY_AFTER_MAX_S, max(0.0, float(headers.get("Retry-After", "1"))))
    except ValueError:
        return 1.0


def _parsed(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
