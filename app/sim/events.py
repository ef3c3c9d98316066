"""Websocket clients by client id: execution events reach only the client that asked.

As ComfyUI 0.3.64's server.py keeps them: one socket per client id; a new connection with an id
in use replaces the old socket (which then hears nothing), and when any socket of that id
closes, the id is dropped — even if a newer socket had taken it over (that one goes deaf)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from aiohttp import web


class EventHub:
    def __init__(self) -> None:
        self._sockets: dict[str, web.WebSocketResponse] = {}

    def add(self, sid: str, socket: web.WebSocketResponse) -> None:
        self._sockets.pop(sid, None)  # "Reusing existing session, remove old"
        self._sockets[sid] = socket

    def remove(self, sid: str) -> None:
        self._sockets.pop(sid, None)  # whichever socket holds the id now

    async def send(self, event: str, data: dict[str, Any], sid: str | None = None) -> None:
        """To one client (sid), or to everyone when sid is None, as ComfyUI's send_sync."""
        text = json.dumps({"type": event, "data": data})
        if sid is None:
            targets = list(self._sockets.values())
        else:
            targets = [self._sockets[sid]] if sid in self._sockets else []
        if targets:
            await asyncio.gather(*(self._send(s, text) for s in targets))

    @staticmethod
    async def _send(socket: web.WebSocketResponse, text: str) -> None:
        if not socket.closed:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await socket.send_str(text)

    async def close_all(self) -> None:
        for socket in list(self._sockets.values()):
            await socket.close()
