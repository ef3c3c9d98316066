"""ComfyUI's own log over HTTP, as recorded (recordings/cpu/logs_api.json): the entries so far
at /internal/logs/raw and /internal/logs, and after PATCH /internal/logs/subscribe the new ones
on that client's websocket as `logs` events. Served only without the /api prefix."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from app.sim.events import EventHub
from app.sim.simlog import Entry, SimLog

SIZE = {"cols": 80, "rows": 24}


class InternalLogs:
    def __init__(self, log: SimLog, events: EventHub) -> None:
        self.log = log
        self.events = events
        self.subscribers: set[str] = set()
        self._sending: set[asyncio.Task[None]] = set()
        log.on_entry = self._new_entry

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/internal/logs/raw", self.raw),
            web.get("/internal/logs", self.joined),
            web.patch("/internal/logs/subscribe", self.subscribe),
        ]

    async def raw(self, request: web.Request) -> web.Response:
        return web.json_response({"entries": list(self.log.entries), "size": SIZE})

    async def joined(self, request: web.Request) -> web.Response:
        text = "".join(f"{e['t']} - {e['m']}" for e in self.log.entries)
        return web.json_response(text)

    async def subscribe(self, request: web.Request) -> web.Response:
        data: Any = await request.json()
        client = str(data.get("clientId", "")) if isinstance(data, dict) else ""
        if data.get("enabled") if isinstance(data, dict) else False:
            self.subscribers.add(client)
        else:
            self.subscribers.discard(client)
        return web.Response()

    def _new_entry(self, entry: Entry) -> None:
        if not self.subscribers:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # written before the server runs: it is in /internal/logs/raw
        for client in list(self.subscribers):
            data: dict[str, Any] = {"entries": [entry], "size": None}
            task = loop.create_task(self.events.send("logs", data, client))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)
