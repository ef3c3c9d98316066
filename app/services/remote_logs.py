"""Any ComfyUI's own log, over its API (REFERENCE §1, recordings/cpu/logs_api.json): the lines
so far from /internal/logs/raw (or ComfyUI-Distributed's /distributed/local_log), then each new
one as it comes on the websocket after PATCH /internal/logs/subscribe. Remote and cloud
workers' logs are shown this way; it reconnects when the connection drops."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from typing import Any

import aiohttp

from app.core.codec import json_object
from app.services.comfy_client import classify

log = logging.getLogger(__name__)
Lines = Callable[[list[str]], None]
Said = Callable[[str], None]
HISTORY_LINES = 500
RETRY_S = (1.0, 2.0, 5.0, 10.0)


def entry_lines(entries: Any) -> list[str]:
    """The lines of ComfyUI's log entries ({"t", "m"}; a message may hold several lines)."""
    lines: list[str] = []
    for entry in entries if isinstance(entries, list) else []:
        message = entry.get("m", "") if isinstance(entry, dict) else ""
        lines += str(message).removesuffix("\n").split("\n")
    return lines


class RemoteLog:
    """Follows one instance's log until stopped; lines and state changes go to the callbacks."""

    def __init__(
        self, session: aiohttp.ClientSession, url: str, on_lines: Lines, on_state: Said
    ) -> None:
        self._session = session
        self.url = url
        self._on_lines = on_lines
        self._on_state = on_state
        self.client_id = f"comfyfleet-logs-{uuid.uuid4().hex[:12]}"

    async def follow(self) -> None:
        attempt = 0
        while True:
            try:
                await self._once()
                attempt = 0
                self._on_state("the log connection closed; reconnecting…")
            except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
                reason = classify(exc).detail if not isinstance(exc, ValueError) else str(exc)
                self._on_state(f"cannot read its log: {reason}; trying again…")
            await asyncio.sleep(RETRY_S[min(attempt, len(RETRY_S) - 1)])
            attempt += 1

    async def _once(self) -> None:
        socket = await self._session.ws_connect(f"{self.url}/ws?clientId={self.client_id}")
        try:
            self._on_lines(await self._history())
            subscribed = await self._subscribe(True)
            self._on_state(
                "live" if subscribed else "no live lines from this ComfyUI (shown: its last lines)"
            )
            async for message in socket:
                if message.type is not aiohttp.WSMsgType.TEXT:
                    continue
                event = json_object(message.data) or {}
                data = event.get("data")
                if event.get("type") == "logs" and isinstance(data, dict):
                    self._on_lines(entry_lines(data.get("entries")))
        finally:
            with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                await self._subscribe(False)
            await socket.close()

    async def _history(self) -> list[str]:
        async with self._session.get(f"{self.url}/internal/logs/raw") as response:
            if response.status == 200:
                return entry_lines((await response.json()).get("entries"))[-HISTORY_LINES:]
        route = f"{self.url}/distributed/local_log?lines={HISTORY_LINES}"
        async with self._session.get(route) as response:
            if response.status != 200:
                return [f"(this ComfyUI serves no log: HTTP {response.status})"]
            content = (await response.json()).get("content", "")
        return str(content).splitlines()

    async def _subscribe(self, enabled: bool) -> bool:
        body = {"clientId": self.client_id, "enabled": enabled}
        async with self._session.patch(f"{self.url}/internal/logs/subscribe", json=body) as answer:
            return answer.status == 200
