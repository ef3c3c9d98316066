"""Websocket clients by client id: execution events reach only the client that asked."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import defaultdict
from typing import Any

from aiohttp import web


class EventHub:
    def __init__(self) -> None:
        self._sockets: dict[str, set[web.WebSocketResponse]] = defaultdict(set)

    def add(self, sid: str, socket: web.WebSocketResponse) -> None:
        self._sockets[sid].add(socket)

    def remove(self, sid: str, socket: web.WebSocketResponse) -> None:
        self._sockets[sid].discard(socket)
        if not self._sockets[sid]:
            del self._sockets[sid]

    async def send(self, event: str, data: dict[str, Any], sid: str | None = None) -> None:
        """To one client (sid), or to everyone when sid is None, as ComfyUI's send_sync."""
        text = json.dumps({"type": event, "data": data})
        if sid is None:
            targets = [s for group in self._sockets.values() for s in group]
        else:
            targets = list(self._sockets.get(sid, ()))
        if targets:
            await asyncio.gather(*(self._send(s, text) for s in targets))

    @staticmethod
    async def _send(socket: web.WebSocketResponse, text: str) -> None:
        if not socket.closed:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await socket.send_str(text)

    async def close_all(self) -> None:
        for group in list(self._sockets.values()):
            for socket in list(group):
                await socket.close()
