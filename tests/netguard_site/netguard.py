"""Tests talk to this machine only: loopback addresses (127.0.0.0/8, ::1) and the name
localhost. Anything else is refused (PermissionError) and reported, so the test fails even if
the code under test took the refusal for an offline worker.

Installed in the test process by an autouse fixture (tests/conftest.py) and in every Python
the tests start, through sitecustomize.py beside this file (on PYTHONPATH).
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Callable
from typing import Any

LOG_ENV = "COMFYFLEET_NETGUARD_LOG"
LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})


def allowed(host: Any) -> bool:
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    text = str(host).strip("[]").split("%")[0]
    try:
        return ipaddress.ip_address(text).is_loopback
    except ValueError:
        return text.lower().rstrip(".") in LOCAL_NAMES


def never_resolves(host: Any) -> bool:
    """RFC 6761: names under .invalid never resolve; answered here, as a resolver must, with
    no query sent (the tests of DNS failures use them)."""
    text = host.decode("ascii", "replace") if isinstance(host, bytes) else str(host)
    return text.lower().rstrip(".").endswith(".invalid")


def _report_to_log(message: str) -> None:
    path = os.environ.get(LOG_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as log:
            log.write(f"{os.getpid()}: {message}\n")


def _check_address(address: Any, report: Callable[[str], None]) -> None:
    host = address[0] if isinstance(address, tuple) else None  # (AF_UNIX paths are local)
    if not allowed(host):
        message = f"network guard: a test tried to connect to {address!r}"
        report(message)
        raise PermissionError(message)


def _check_name(host: Any, report: Callable[[str], None]) -> None:
    if host is not None and never_resolves(host):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    if not allowed(host):
        message = f"network guard: a test tried to resolve {host!r}"
        report(message)
        raise PermissionError(message)


def install(report: Callable[[str], None] = _report_to_log) -> Callable[[], None]:
    """Guard this process; returns a function that takes the guard off."""
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo
    real_gethostbyname = socket.gethostbyname

    def connect(self: socket.socket, address: Any) -> None:
        _check_address(address, report)
        real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        _check_address(address, report)
        return real_connect_ex(self, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        _check_name(host, report)
        return real_getaddrinfo(host, *args, **kwargs)

    def gethostbyname(host: str) -> str:
        _check_name(host, report)
        return real_gethostbyname(host)

    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
    socket.getaddrinfo = getaddrinfo
    socket.gethostbyname = gethostbyname

    def uninstall() -> None:
        socket.socket.connect = real_connect  # type: ignore[method-assign]
        socket.socket.connect_ex = real_connect_ex  # type: ignore[method-assign]
        socket.getaddrinfo = real_getaddrinfo
        socket.gethostbyname = real_gethostbyname

    return uninstall


def guarded_uvloop(report: Callable[[str], None]) -> Callable[[], Any]:
    """A factory of uvloop loops whose connections and look-ups pass the same checks: uvloop
    connects and resolves in C, out of reach of the socket module's guard."""
    try:
        import uvloop
    except ImportError:  # (Windows) the standard loop goes through the guarded socket module
        import asyncio

        return asyncio.new_event_loop

    class GuardedLoop(uvloop.Loop):  # type: ignore[misc]
        async def create_connection(
            self, factory: Any, host: Any = None, port: Any = None, **kw: Any
        ) -> Any:
            if host is not None:
                _check_name(host, report)
            return await super().create_connection(factory, host, port, **kw)

        async def getaddrinfo(self, host: Any, *args: Any, **kwargs: Any) -> Any:
            _check_name(host, report)
            return await super().getaddrinfo(host, *args, **kwargs)

    return GuardedLoop
