"""Runpod's REST v2 API on the app's aiohttp session (REFERENCE §8, shared/runpod/openapi-v2.json).

Every call carries the API key as a bearer token and ComfyFleet's own User-Agent; problems come
back as RunpodError with a sentence a user can act on. A 429 waits the Retry-After it names;
a 5xx or a dropped connection is tried again with backoff. A create whose answer was lost (5xx)
may still have made the pod: it is looked up by name before it is ever sent again, so a retry
never bills two pods. The key is never logged."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import aiohttp

from app import __version__
from app.core.cloud import Pod, PodRecipe, problem_sentence
from app.core.codec import parse_json
from app.core.errors import ComfyFleetError
from app.core.secret_sources import RUNPOD_KEY
from app.services.secrets import SecretStore

log = logging.getLogger(__name__)
USER_AGENT = f"ComfyFleet/{__version__}"
API_KEY = RUNPOD_KEY  # its keyring entry (or RUNPOD_API_KEY where no keyring is)
ATTEMPTS = 4
BACKOFF_S = 1.0
RETRY_AFTER_MAX_S = 60.0
ANSWER_TIMEOUT_S = 15.0
NETWORK_ERRORS = (aiohttp.ClientConnectionError, TimeoutError, OSError)
Sleep = Callable[[float], Awaitable[None]]
T = TypeVar("T")


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
        timeout_s: float = ANSWER_TIMEOUT_S,
    ) -> None:
        self._session = session
        self._timeout_s = timeout_s
        self._headers = {
            "Authorization": f"Bearer {api_key}",
            "User-Agent": USER_AGENT,
            "Accept": "application/json",
        }
        self.base_url = base_url.rstrip("/")
        self._sleep = sleep

    # pods

    async def pods(self) -> list[Pod]:
        data = await self._json("GET", "/v2/pods", what="the pods")
        return _shaped("the pods", lambda: [Pod.from_api(p) for p in data.get("pods", [])])

    async def pod(self, pod_id: str) -> Pod:
        data = await self._json("GET", f"/v2/pods/{pod_id}", what=f"pod {pod_id}")
        return _shaped(f"pod {pod_id}", Pod.from_api, data)

    async def create(self, recipe: PodRecipe, name: str) -> Pod:
        """A new pod; after a lost answer (5xx, a dropped connection) the pod of that name, if
        Runpod made it after all, instead of a second one."""
        body = recipe.body(name)
        for attempt in range(1, ATTEMPTS + 1):
            try:
                data = await self._json("POST", "/v2/pods", body, retry=False, what="the new pod")
                return _shaped("the new pod", Pod.from_api, data)
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
        what = f"{action} {pod_id}"
        data = await self._json("POST", f"/v2/pods/{pod_id}/action", {"action": action}, what=what)
        return None if data is None else _shaped(what, Pod.from_api, data)

    async def logs(self, pod_id: str, tail: int = 100, quiet_s: float = 1.0) -> list[str]:
        """The pod's last `tail` lines: the log stream's backfill, read until `tail` lines came
        or it went quiet for `quiet_s` (the stream itself stays open for new lines)."""
        lines: list[str] = []
        async with contextlib.aclosing(self.follow_logs(pod_id, tail, quiet_s)) as stream:
            async for line in stream:
                lines.append(line)
                if len(lines) >= tail:
                    break
        return lines

    async def follow_logs(
        self, pod_id: str, tail: int = 100, quiet_s: float | None = None
    ) -> AsyncGenerator[str, None]:
        """Each line of the pod's log as it comes (GET /v2/pods/{id}/logs is Server-Sent
        Events kept open): the backfill of `tail` lines, then new ones; with `quiet_s`, it ends
        once no line came for that long."""
        try:
            async with asyncio.timeout(self._timeout_s):  # its headers; the lines take their time
                response = await self._session.get(
                    f"{self.base_url}/v2/pods/{pod_id}/logs",
                    params={"tail": str(tail)},
                    headers={**self._headers, "Accept": "text/event-stream"},
                    timeout=aiohttp.ClientTimeout(total=None, sock_connect=5),
                )
        except TimeoutError:
            raise self._no_answer() from None
        except NETWORK_ERRORS as exc:
            raise RunpodError(0, f"Runpod could not be reached: {exc}") from None
        async with response:
            if response.status != 200:
                text = await response.text()
                sentence = problem_sentence(response.status, _parsed(text), f"pod {pod_id}")
                raise RunpodError(response.status, sentence)
            while True:
                try:
                    raw = await asyncio.wait_for(response.content.readline(), quiet_s)
                except TimeoutError:
                    return
                if not raw:
                    return  # Runpod ended the stream
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                if line.startswith("data:"):
                    event = _parsed(line[5:].strip())
                    yield str(event.get("line", "")) if isinstance(event, dict) else line[5:]

    # catalog and money

    async def gpu_types(self) -> list[GpuType]:
        data = await self._json("GET", "/v2/catalog/gpus", what="the GPU catalog")
        return _shaped(
            "the GPU catalog",
            lambda: [
                GpuType(
                    str(g["id"]),
                    str(g.get("name", g["id"])),
                    int(g.get("memory", 0)),
                    float((g.get("price") or {}).get("secure", 0.0)),
                    float((g.get("price") or {}).get("community", 0.0)),
                )
                for g in data.get("gpus", [])
            ],
        )

    async def pod_costs(self, since: float, until: float | None = None) -> PodCosts:
        params = {"startTime": _iso(since), "endTime": _iso(until or time.time())}
        data = await self._json("GET", "/v2/billing/pods", params=params, what="the billing")

        def costs() -> PodCosts:
            by_pod: dict[str, float] = {}
            for record in data.get("records", []):
                pod_id = str(record.get("podId"))
                by_pod[pod_id] = by_pod.get(pod_id, 0.0) + float(record.get("totalAmount", 0.0))
            totals = (data.get("metadata") or {}).get("totals") or {}
            return PodCosts(by_pod, float(totals.get("totalAmount", 0.0)))

        return _shaped("the billing", costs)

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
            except TimeoutError:  # waiting longer helps nobody: said now, with the cause
                raise self._no_answer() from None
            except NETWORK_ERRORS as exc:
                problem = _Transient(0, f"Runpod could not be reached: {exc or type(exc).__name__}")
            else:
                if status == 429 and attempt < ATTEMPTS:
                    await self._sleep(_retry_after(headers))
                    continue
                if status < 500 or status == 501:
                    if status >= 400:
                        raise RunpodError(status, problem_sentence(status, _parsed(text), what))
                    return _answer(status, text, what)
                problem = _Transient(status, problem_sentence(status, _parsed(text), what))
            if not retry:
                raise problem
            if attempt >= ATTEMPTS:
                raise RunpodError(problem.status, f"{problem.sentence} (tried {attempt} times)")
            await self._sleep(BACKOFF_S * 2 ** (attempt - 1))

    def _no_answer(self) -> RunpodError:
        return RunpodError(
            0, f"Runpod did not answer within {self._timeout_s:g} s ({self.base_url})"
        )

    async def _send(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
    ) -> tuple[int, str, dict[str, str]]:
        request_id = uuid.uuid4().hex[:8]
        log.debug("runpod %s %s %s", request_id, method, path)  # never the headers (the key)
        async with self._session.request(
            method,
            f"{self.base_url}{path}",
            json=body,
            params=params,
            headers=self._headers,
            timeout=aiohttp.ClientTimeout(total=self._timeout_s, sock_connect=5),
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


def _answer(status: int, text: str, what: str) -> Any:
    """A 2xx answer's JSON object (None for an empty one); anything else is said."""
    if not text:
        return None
    data = _parsed(text)
    if not isinstance(data, dict):
        shown = " ".join(text[:80].split())
        kind = "not JSON" if data is None and text.strip() != "null" else "not an object"
        raise RunpodError(
            status, f"Runpod answered something unexpected for {what}: {kind} ({shown!r})"
        )
    return data


def _shaped(what: str, build: Callable[..., T], *args: Any) -> T:
    """An answer read into types; a malformed one said as such, never a traceback."""
    try:
        return build(*args)
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise RunpodError(
            200, f"Runpod answered something unexpected for {what}: not in its API's shape ({exc})"
        ) from None


def _parsed(text: str) -> Any:
    try:
        return parse_json(text)
    except ValueError:
        return None


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
