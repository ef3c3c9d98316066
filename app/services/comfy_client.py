"""Talking to ComfyUI instances over HTTP: one long-lived httpx client, typed results."""

from __future__ import annotations

import asyncio
import errno
import json
import socket
import ssl
import time
from typing import Any

import httpx

from app.core.health import (
    Failure,
    NotComfyUI,
    ProbeError,
    ProbeResult,
    parse_queue_remaining,
    parse_system_stats,
)

DEFAULT_TIMEOUT = httpx.Timeout(2.0, connect=2.0)


class ComfyClient:
    """The app's HTTP client for every ComfyUI instance (never one client per call)."""

    def __init__(self, timeout: httpx.Timeout = DEFAULT_TIMEOUT, max_connections: int = 256):
        limits = httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        )
        self.http = httpx.AsyncClient(timeout=timeout, limits=limits, follow_redirects=False)

    async def close(self) -> None:
        await self.http.aclose()

    async def probe(self, base_url: str) -> ProbeResult:
        """`/system_stats` and `/prompt`, concurrently; a failure is classified, never raised."""
        started = time.perf_counter()
        try:
            stats_response, queue_response = await asyncio.gather(
                self.http.get(f"{base_url}/system_stats"), self.http.get(f"{base_url}/prompt")
            )
            latency = (time.perf_counter() - started) * 1000
            for response in (stats_response, queue_response):
                _raise_for_status(response)
            stats = parse_system_stats(_json(stats_response))
            queue = parse_queue_remaining(_json(queue_response))
        except httpx.HTTPError as exc:
            return ProbeResult(error=classify(exc))
        except NotComfyUI as exc:
            return ProbeResult(error=ProbeError(Failure.NOT_COMFYUI, str(exc)))
        except _StatusError as exc:
            return ProbeResult(error=exc.error)
        return ProbeResult(stats, queue, latency)

    async def get_json(self, url: str) -> Any:
        response = await self.http.get(url)
        response.raise_for_status()
        return response.json()


class _StatusError(Exception):
    def __init__(self, error: ProbeError) -> None:
        super().__init__(error.detail)
        self.error = error


def _raise_for_status(response: httpx.Response) -> None:
    code = response.status_code
    if code == 403:
        raise _StatusError(ProbeError(Failure.FORBIDDEN, "HTTP 403 Forbidden"))
    if code >= 500:
        raise _StatusError(ProbeError(Failure.SERVER_ERROR, f"HTTP {code}"))
    if code != 200:
        raise _StatusError(
            ProbeError(Failure.NOT_COMFYUI, f"HTTP {code} from {response.request.url.path}")
        )


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise NotComfyUI(f"{response.request.url.path} did not answer JSON") from None


def _causes(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and len(chain) < 10:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def classify(exc: httpx.HTTPError) -> ProbeError:
    """Tell DNS, refused, timeout and TLS failures apart from the exception chain."""
    if isinstance(exc, httpx.TimeoutException):
        return ProbeError(Failure.TIMEOUT, f"no answer in time ({type(exc).__name__})")
    causes = _causes(exc)
    text = " ".join(str(c) for c in causes)
    if any(isinstance(c, ssl.SSLError) for c in causes) or "CERTIFICATE_VERIFY_FAILED" in text:
        return ProbeError(Failure.TLS, "TLS handshake failed")
    if any(isinstance(c, socket.gaierror) for c in causes) or "Name or service not known" in text:
        return ProbeError(Failure.DNS, "host name not found")
    refused = any(
        isinstance(c, ConnectionRefusedError)
        or (isinstance(c, OSError) and c.errno == errno.ECONNREFUSED)
        for c in causes
    )
    if refused or "Connection refused" in text or "connection attempts failed" in text:
        return ProbeError(Failure.REFUSED, "connection refused")
    if isinstance(exc, httpx.RemoteProtocolError):
        return ProbeError(Failure.NOT_COMFYUI, "the server does not speak HTTP as ComfyUI does")
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
    except (httpx.HTTPError, ValueError):
        extension = "ComfyUI-Distributed is NOT installed there (install it to use this worker)"
    vram = f"{stats.vram_free / 1024**3:.1f} of {stats.vram_total / 1024**3:.1f} GiB VRAM free"
    return (
        f"✔ ComfyUI {stats.comfyui_version} on {stats.device}; {vram}; {extension}; "
        f"{result.latency_ms:.0f} ms"
    )
