"""Talking to ComfyUI instances over HTTP: one long-lived client session, typed results.

The monitor probes every worker every second or two, so the client's own CPU cost matters:
measured on this project's 2-core machine, httpx spent 1.6 ms of CPU per probe (two requests),
aiohttp's client 0.33 ms (tests/benchmarks/bench_monitor.py). Hence aiohttp here.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from typing import Any

import aiohttp

from app.core.health import (
    Failure,
    NotComfyUI,
    ProbeError,
    ProbeResult,
    parse_queue_remaining,
    parse_system_stats,
)

DEFAULT_TIMEOUT_S = 2.0


class _StatusError(Exception):
    def __init__(self, error: ProbeError) -> None:
        super().__init__(error.detail)
        self.error = error


class ComfyClient:
    """The app's HTTP client for every ComfyUI instance (never one session per call)."""

    def __init__(self, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, connect=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        """Created on first use, inside the running event loop."""
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=0, limit_per_host=4, ttl_dns_cache=60)
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=self._timeout, auto_decompress=True
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _get(self, url: str) -> Any:
        async with self.session().get(url, allow_redirects=False) as response:
            _raise_for_status(response.status, response.url.path)
            body = await response.read()
        try:
            return json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise NotComfyUI(f"{response.url.path} did not answer JSON") from None

    async def probe(self, base_url: str) -> ProbeResult:
        """`/system_stats` and `/prompt`, concurrently; a failure is classified, never raised."""
        started = time.perf_counter()
        try:
            stats_data, queue_data = await asyncio.gather(
                self._get(f"{base_url}/system_stats"), self._get(f"{base_url}/prompt")
            )
            latency = (time.perf_counter() - started) * 1000
            stats = parse_system_stats(stats_data)
            queue = parse_queue_remaining(queue_data)
        except (aiohttp.ClientError, TimeoutError) as exc:
            return ProbeResult(error=classify(exc))
        except NotComfyUI as exc:
            return ProbeResult(error=ProbeError(Failure.NOT_COMFYUI, str(exc)))
        except _StatusError as exc:
            return ProbeResult(error=exc.error)
        return ProbeResult(stats, queue, latency)

    async def get_json(self, url: str) -> Any:
        """GET and decode; raises ProbeError-carrying exceptions as the probe classifies them."""
        return await self._get(url)


def _raise_for_status(code: int, path: str) -> None:
    if code == 403:
        raise _StatusError(ProbeError(Failure.FORBIDDEN, "HTTP 403 Forbidden"))
    if code >= 500:
        raise _StatusError(ProbeError(Failure.SERVER_ERROR, f"HTTP {code}"))
    if code != 200:
        raise _StatusError(ProbeError(Failure.NOT_COMFYUI, f"HTTP {code} from {path}"))


def classify(exc: BaseException) -> ProbeError:
    """Tell DNS, refused, timeout and TLS failures apart."""
    if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
        return ProbeError(Failure.TIMEOUT, "no answer in time")
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return ProbeError(Failure.DNS, "host name not found")
    if isinstance(exc, aiohttp.ClientSSLError) or isinstance(
        getattr(exc, "os_error", None), ssl.SSLError
    ):
        return ProbeError(Failure.TLS, "TLS handshake failed")
    if isinstance(exc, aiohttp.ClientConnectorError):
        if isinstance(exc.os_error, ConnectionRefusedError):
            return ProbeError(Failure.REFUSED, "connection refused")
        return ProbeError(Failure.NETWORK, f"cannot connect: {exc.os_error}")
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
        return ProbeError(Failure.NOT_COMFYUI, "the server does not speak HTTP as ComfyUI does")
    if isinstance(exc, aiohttp.ClientResponseError):
        return ProbeError(Failure.NOT_COMFYUI, f"bad HTTP answer: {exc.message}")
    return ProbeError(Failure.NETWORK, str(exc) or type(exc).__name__)


async def check_connection(client: ComfyClient, base_url: str) -> str:
    """What the Test connection button reports: what answered, or exactly why not."""
    result = await client.probe(base_url)
    if result.error is not None:
        return f"✘ {base_url}: {result.error.message}"
    assert result.stats is not None
    stats = result.stats
    try:
        await client.get_json(f"{base_url}/distributed/system_info")
        extension = "ComfyUI-Distributed answers"
    except (aiohttp.ClientError, TimeoutError, NotComfyUI, _StatusError):
        extension = "ComfyUI-Distributed is NOT installed there (install it to use this worker)"
    vram = f"{stats.vram_free / 1024**3:.1f} of {stats.vram_total / 1024**3:.1f} GiB VRAM free"
    return (
        f"✔ ComfyUI {stats.comfyui_version} on {stats.device}; {vram}; {extension}; "
        f"{result.latency_ms:.0f} ms"
    )
