"""A small real client for the simulated ComfyUI: HTTP + websocket, as ComfyFleet will use it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from tests.conftest import RECORDINGS


def workflow(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((RECORDINGS / "workflows" / f"{name}.json").read_text())
    return data


def recorded_http(run: str = "cpu") -> dict[str, Any]:
    data: dict[str, Any] = json.loads((RECORDINGS / run / "comfy_http.json").read_text())
    return data


def recorded_ws(run: str = "cpu") -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = json.loads((RECORDINGS / run / "ws_sequences.json").read_text())
    return data


@dataclass
class Listener:
    """A websocket client for one client id, collecting every event it receives."""

    socket: aiohttp.ClientWebSocketResponse
    events: list[dict[str, Any]] = field(default_factory=list)

    async def until(
        self, kind: str, prompt_id: str | None = None, node: Any = "any", timeout: float = 30.0
    ) -> dict[str, Any]:
        async def wait() -> dict[str, Any]:
            while True:
                message = await self.socket.receive()
                if message.type != aiohttp.WSMsgType.TEXT:
                    raise ConnectionError(f"websocket ended: {message.type}")
                event: dict[str, Any] = json.loads(message.data)
                self.events.append(event)
                data = event["data"]
                if event["type"] != kind:
                    continue
                if prompt_id is not None and data.get("prompt_id") != prompt_id:
                    continue
                if node != "any" and data.get("node") != node:
                    continue
                return event

        return await asyncio.wait_for(wait(), timeout)

    async def finished(self, prompt_id: str, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Events up to ComfyUI's real end marker, executing with node null."""
        start = len(self.events)
        await self.until("executing", prompt_id, node=None, timeout=timeout)
        return [
            e
            for e in self.events[start:]
            if e["data"].get("prompt_id") in (prompt_id, None) or e["type"] == "status"
        ]


@asynccontextmanager
async def listen(
    session: aiohttp.ClientSession, url: str, client_id: str
) -> AsyncIterator[Listener]:
    async with session.ws_connect(f"{url}/ws?clientId={client_id}") as socket:
        listener = Listener(socket)
        await listener.until("status")
        yield listener


async def post_json(session: aiohttp.ClientSession, url: str, body: Any) -> tuple[int, Any]:
    async with session.post(url, json=body) as response:
        text = await response.text()
        try:
            return response.status, json.loads(text) if text else None
        except json.JSONDecodeError:
            return response.status, text


async def get_json(session: aiohttp.ClientSession, url: str) -> Any:
    async with session.get(url) as response:
        response.raise_for_status()
        return await response.json()


async def download(session: aiohttp.ClientSession, url: str, image: dict[str, str]) -> bytes:
    async with session.get(f"{url}/view", params=image) as response:
        response.raise_for_status()
        assert response.content_type == "image/png"
        return await response.read()


def types(events: list[dict[str, Any]], skip: tuple[str, ...] = ()) -> list[str]:
    return [e["type"] for e in events if e["type"] not in skip]


def tmp_sim_dir(tmp: Path, name: str) -> Path:
    folder = tmp / name
    folder.mkdir(parents=True, exist_ok=True)
    return folder
