"""Talking to ComfyUI instances over HTTP: one long-lived client session, typed results.

The monitor probes every worker every second or two, so the client's own CPU cost matters:
measured on this project's 2-core machine, httpx spent 1.6 ms of CPU per probe (two requests),
aiohttp's client 0.33 ms, and the probe's own keep-alive GETs (probe_http) less again
(tests/benchmarks/bench_monitor.py). Probes use those; every other call uses aiohttp.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from app.core.codec import parse_json
from app.core.errors import ComfyFleetError
from app.core.health import (
    Failure,
    NotComfyUI,
    ProbeError,
    ProbeResult,
    parse_queue_remaining,
    parse_system_stats,
)
from app.services.probe_http import BadHttp, Disconnected, ProbeHttp

DEFAULT_TIMEOUT_S = 2.0


class _StatusError(Exception):
    def __init__(self, error: ProbeError) -> None:
        super().__init__(error.detail)
        self.error = error


class ComfyClient:
    """The app's HTTP client for every ComfyUI instance (never one session per call)."""

    def __init__(self, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self._timeout_s = timeout_s
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, connect=timeout_s)
        self._session: aiohttp.ClientSession | None = None
        self._probe_http = ProbeHttp()

    def session(self) -> aiohttp.ClientSession:
        """Created on first use, inside the running event loop."""
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=0, limit_per_host=4, ttl_dns_cache=60)
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=self._timeout, auto_decompress=True
            )
        return self._session

    async def close(self) -> None:
        self._probe_http.close()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _get(self, url: str) -> Any:
        async with self.session().get(url, allow_redirects=False) as response:
            _raise_for_status(response.status, response.url.path)
            body = await response.read()
        try:
            return parse_json(body)
        except ValueError:  # not JSON, not UTF-8, too deep
            raise NotComfyUI(f"{response.url.path} did not answer JSON") from None

    @property
    def probe_http(self) -> ProbeHttp:
        return self._probe_http

    @property
    def timeout_s(self) -> float:
        return self._timeout_s

    async def probe(self, base_url: str) -> ProbeResult:
        """`/system_stats` and `/prompt`, concurrently; a failure is classified, never raised."""
        started = time.perf_counter()
        urls = probe_urls(base_url)
        try:
            async with asyncio.timeout(self._timeout_s):
                stats, queue = await self._probe_http.get_all(urls)
        except (aiohttp.ClientError, OSError, TimeoutError, BadHttp) as exc:
            return ProbeResult(error=classify(exc))
        except ValueError as exc:  # a URL no request can be made of
            return ProbeResult(error=bad_address(exc))
        return probe_result(urls, stats, queue, (time.perf_counter() - started) * 1000)

    async def get_json(self, url: str) -> Any:
        """GET and decode; raises ProbeError-carrying exceptions as the probe classifies them."""
        return await self._get(url)


def probe_urls(base_url: str) -> tuple[str, str]:
    """What one probe asks: VRAM, version and devices; and the queue."""
    return f"{base_url}/system_stats", f"{base_url}/prompt"


def probe_result(
    urls: tuple[str, str], stats: tuple[int, bytes], queue: tuple[int, bytes], latency_ms: float
) -> ProbeResult:
    """The two answers of a probe, read; anything unexpected is classified, never raised."""
    try:
        return ProbeResult(
            parse_system_stats(_decode(urls[0], *stats)),
            parse_queue_remaining(_decode(urls[1], *queue)),
            latency_ms,
        )
    except NotComfyUI as exc:
        return ProbeResult(error=ProbeError(Failure.NOT_COMFYUI, str(exc)))
    except _StatusError as exc:
        return ProbeResult(error=exc.error)


def _decode(url: str, status: int, body: bytes) -> Any:
    if status != 200:
        _raise_for_status(status, urlsplit(url).path)
    try:
        return parse_json(body.decode())  # (a str skips json's guessing of the encoding)
    except ValueError:  # not JSON, not UTF-8, too deep
        raise NotComfyUI(f"{urlsplit(url).path} did not answer JSON") from None


def _raise_for_status(code: int, path: str) -> None:
    if code == 403:
        raise _StatusError(ProbeError(Failure.FORBIDDEN, "HTTP 403 Forbidden"))
    if code >= 500:
        raise _StatusError(ProbeError(Failure.SERVER_ERROR, f"HTTP {code}"))
    if code != 200:
        raise _StatusError(ProbeError(Failure.NOT_COMFYUI, f"HTTP {code} from {path}"))


NOT_HTTP = "the server does not speak HTTP as ComfyUI does"


def bad_address(exc: BaseException) -> ProbeError:
    return ProbeError(Failure.BAD_ADDRESS, f"bad address ({exc})")


def classify(exc: BaseException) -> ProbeError:
    """Tell DNS, refused, timeout and TLS failures apart (aiohttp's errors and plain OSErrors)."""
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return ProbeError(Failure.DNS, "host name not found")
    if isinstance(exc, aiohttp.ClientSSLError):
        return ProbeError(Failure.TLS, "TLS handshake failed")
    if isinstance(exc, aiohttp.ClientConnectorError):
        exc = exc.os_error
    if isinstance(exc, aiohttp.ClientResponseError):
        return ProbeError(Failure.NOT_COMFYUI, f"bad HTTP answer: {exc.message}")
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
        return ProbeError(Failure.NOT_COMFYUI, NOT_HTTP)
    if isinstance(exc, BadHttp | Disconnected):
        return ProbeError(Failure.NOT_COMFYUI, NOT_HTTP)
    return _classify_os_error(exc)


def _classify_os_error(exc: BaseException) -> ProbeError:
    if isinstance(exc, TimeoutError):
        return ProbeError(Failure.TIMEOUT, "no answer in time")
    if isinstance(exc, socket.gaierror):
        return ProbeError(Failure.DNS, "host name not found")
    if isinstance(exc, ssl.SSLError):
        return ProbeError(Failure.TLS, "TLS handshake failed")
    if isinstance(exc, ConnectionRefusedError):
        return ProbeError(Failure.REFUSED, "connection refused")
    if isinstance(exc, OSError):
        return ProbeError(Failure.NETWORK, f"cannot connect: {exc}")
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


async def what_answers(session: aiohttp.ClientSession, base_url: str) -> ProbeError | None:
    """What the monitor's probe would say of `base_url` (None: a ComfyUI answers there), for
    the jobs' own session: one classification for `status` and the jobs alike."""
    urls = probe_urls(base_url)
    answers = []
    try:
        for url in urls:
            async with session.get(url, allow_redirects=False) as response:
                answers.append((response.status, await response.read()))
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        return classify(exc)
    return probe_result(urls, answers[0], answers[1], 0.0).error


class MasterUnusable(ComfyFleetError):
    """The master cannot take a job: unreachable, not ComfyUI, or it answered an error."""


def unusable(url: str, error: ProbeError) -> MasterUnusable:
    return MasterUnusable(f"the master at {url}: {error.message}")
