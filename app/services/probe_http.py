"""The monitor's HTTP: keep-alive GETs on plain asyncio protocols, nothing more.

Probing 200 workers once a second is 400 small GETs a second. A general client (aiohttp)
spends about 160 µs of CPU on each; this one writes prepared requests and reads the answers
with llhttp (httptools) for a fraction of that (tests/benchmarks/bench_monitor.py).
Everything else in the app uses aiohttp.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlsplit

import httptools

MAX_BODY_BYTES = 16 * 1024 * 1024
MAX_LENGTH_DIGITS = len(str(MAX_BODY_BYTES))
IDLE_PER_HOST = 4
MAX_ROUTES = 4096


class BadHttp(Exception):
    """The peer does not speak HTTP/1.1 as a web server should."""


class Disconnected(ConnectionError):
    """The peer closed the connection before a whole answer arrived."""


@dataclass(frozen=True)
class _Route:
    """Where a request goes and the bytes it writes: made once per URL list, then reused."""

    key: tuple[str, str, int]
    host: str
    port: int
    tls: bool
    payload: bytes
    count: int


Answer = tuple[int, bytes]
Outcome = list[Answer] | BaseException
Callback = Callable[[Outcome], None]


class _Connection(asyncio.Protocol):
    """One keep-alive connection; the GETs written on it are answered in order.

    Answers are read by llhttp (httptools, as uvicorn reads requests): status, framing
    (Content-Length or chunked), keep-alive; anything it refuses is BadHttp.
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.body = bytearray()
        self.on_answer: Callback | None = None
        self.expected = 0
        self.answers: list[Answer] = []
        self.open = True
        self.keep_alive = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def expect(self, count: int, callback: Callback) -> None:
        self.expected, self.answers, self.on_answer = count, [], callback

    # llhttp's callbacks

    def on_message_begin(self) -> None:
        self.body = bytearray()

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(value) > MAX_LENGTH_DIGITS and name.lower() == b"content-length":
            raise BadHttp("too large a Content-Length")  # (llhttp itself refuses bad ones)

    def on_body(self, body: bytes) -> None:
        self.body += body
        if len(self.body) > MAX_BODY_BYTES:
            raise BadHttp("answer too large")

    def on_message_complete(self) -> None:
        self.keep_alive = self.parser.should_keep_alive()
        self.answers.append((self.parser.get_status_code(), bytes(self.body)))

    # the transport's

    def data_received(self, data: bytes) -> None:
        if self.on_answer is None:
            return  # nothing asked (or already given up on): what comes now is not ours
        try:
            self.parser.feed_data(data)
        except (httptools.HttpParserError, BadHttp) as exc:
            self.keep_alive = False
            self._deliver(_bad_http(exc))
            return
        if len(self.answers) >= self.expected:
            self._deliver(self.answers[: self.expected])

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        self._deliver(exc or Disconnected("connection closed by the server"))

    def _deliver(self, outcome: Outcome) -> None:
        callback, self.on_answer = self.on_answer, None
        if callback is not None:
            callback(outcome)

    def close(self) -> None:
        self.open = False
        self.on_answer = None
        if self.transport is not None:
            self.transport.close()


def _bad_http(exc: Exception) -> BadHttp:
    if isinstance(exc, BadHttp):
        return exc
    cause = exc.__cause__ or exc.__context__  # an error raised in a callback comes wrapped
    if isinstance(cause, BadHttp):
        return cause
    return BadHttp(f"not an HTTP answer ({exc})")


class Request:
    """GETs in flight on one connection; `cancel()` drops them (and the connection)."""

    __slots__ = ("callback", "connecting", "connection", "http", "reused", "route")

    def __init__(self, http: ProbeHttp, route: _Route, callback: Callback) -> None:
        self.http = http
        self.route = route
        self.callback: Callback | None = callback
        self.connection: _Connection | None = None
        self.connecting: asyncio.Task[None] | None = None
        self.reused = False

    def cancel(self) -> None:
        self.callback = None
        if self.connecting is not None:
            self.connecting.cancel()
        if self.connection is not None:
            self.connection.close()

    def answered(self, outcome: Outcome) -> None:
        connection, self.connection = self.connection, None
        assert connection is not None
        if isinstance(outcome, BaseException):
            connection.close()
            if self.reused and isinstance(outcome, Disconnected) and self.callback is not None:
                # a kept-alive connection the server had closed meanwhile: once more, new
                self.connecting = asyncio.ensure_future(self.http.connect_and_send(self))
                return
        else:
            self.http.release(self.route, connection)
        self.finish(outcome)

    def finish(self, outcome: Outcome) -> None:
        callback, self.callback = self.callback, None
        if callback is not None:
            callback(outcome)


class ProbeHttp:
    """Keep-alive connections per host.

    `request(urls)` writes the GETs (of one host) on one connection at once, HTTP/1.1
    pipelining, and answers through a callback: no task or future per probe. Plain-HTTP
    ComfyUI (aiohttp) answers pipelined requests in order; through HTTPS proxies (cloud
    workers) the caller sends one GET per request instead. `get()`/`get_all()` wrap it for
    coroutines.
    """

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self._ssl = ssl_context
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._routes: dict[tuple[str, ...], _Route] = {}

    def _route(self, urls: tuple[str, ...]) -> _Route:
        route = self._routes.get(urls)
        if route is not None:
            return route
        requests, keys = [], set()
        for url in urls:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"not an http(s) URL: {url}")
            tls = parts.scheme == "https"
            port = parts.port or (443 if tls else 80)
            keys.add((parts.scheme, parts.hostname, port))
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            requests.append(
                f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nUser-Agent: ComfyFleet\r\n"
                "Accept: application/json\r\n\r\n"
            )
        if len(keys) != 1:
            raise ValueError("one request, one host")
        key = keys.pop()
        payload = "".join(requests).encode("latin-1")
        route = _Route(key, key[1], key[2], key[0] == "https", payload, len(urls))
        if len(self._routes) > MAX_ROUTES:
            self._routes.clear()
        self._routes[urls] = route
        return route

    def request(self, urls: tuple[str, ...], callback: Callback) -> Request:
        """GET each URL (all of one host) on one connection; `callback` gets the answers in
        order, or the exception, exactly once."""
        request = Request(self, self._route(urls), callback)
        idle = self._idle.get(request.route.key)
        while idle:
            connection = idle.pop()
            if connection.open:
                self._send(request, connection, reused=True)
                return request
        request.connecting = asyncio.ensure_future(self.connect_and_send(request))
        return request

    async def connect_and_send(self, request: Request) -> None:
        try:
            connection = await self._connect(request.route)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # refused, DNS, TLS…: the caller classifies it
            request.finish(exc)
            return
        finally:
            request.connecting = None
        if request.callback is None:
            connection.close()  # cancelled while connecting
            return
        self._send(request, connection, reused=False)

    @staticmethod
    def _send(request: Request, connection: _Connection, reused: bool) -> None:
        request.connection, request.reused = connection, reused
        connection.expect(request.route.count, request.answered)
        assert connection.transport is not None
        connection.transport.write(request.route.payload)

    async def get(self, url: str) -> Answer:
        """Status and body; raises OSError kinds, TimeoutError (from the caller), BadHttp."""
        return (await self.get_all([url]))[0]

    async def get_all(self, urls: Sequence[str]) -> list[Answer]:
        """Several GETs in flight at once, each on its own connection."""
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[Answer]] = [loop.create_future() for _ in urls]
        requests = [
            self.request((url,), functools.partial(_settle, future))
            for url, future in zip(urls, futures, strict=True)
        ]
        try:  # (gather reads the other GETs' errors too: none is left "never retrieved")
            return list(await asyncio.gather(*futures))
        except BaseException:
            for request in requests:
                request.cancel()
            raise

    async def _connect(self, route: _Route) -> _Connection:
        loop = asyncio.get_running_loop()
        context = None
        if route.tls:
            context = self._ssl or ssl.create_default_context()
            self._ssl = context
        transport, protocol = await loop.create_connection(
            _Connection,
            route.host,
            route.port,
            ssl=context,
            server_hostname=route.host if route.tls else None,
        )
        protocol.transport = protocol.transport or transport  # uvloop may tell it later
        return protocol

    def release(self, route: _Route, connection: _Connection) -> None:
        if connection.open and connection.keep_alive:
            pool = self._idle.setdefault(route.key, [])
            if len(pool) < IDLE_PER_HOST:
                pool.append(connection)
                return
        connection.close()

    def close(self) -> None:
        for pool in self._idle.values():
            for connection in pool:
                with contextlib.suppress(Exception):
                    connection.close()
        self._idle.clear()


def _settle(future: asyncio.Future[Answer], outcome: Outcome) -> None:
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome[0])
