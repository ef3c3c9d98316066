"""One participant of the fleet queue: what it holds, its websocket, and fetching what it made."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from app.core.codec import json_object, parse_json
from app.core.image_meta import embedded_texts
from app.core.names import file_name, file_stem
from app.core.runs import Participant, output_images
from app.core.workflow import Workflow
from app.services.comfy_client import classify
from app.services.instance_jobs import InstanceJobs
from app.services.jobs import fetch_image
from app.services.queue_db import Item
from app.services.storage import atomic_write_bytes

log = logging.getLogger(__name__)
RECONNECT_MAX_S = 5.0


@dataclass
class Finished:
    """What a participant's websocket said of one of its prompts."""

    prompt_id: str
    ok: bool
    error: str = ""
    interrupted: bool = False
    out_of_vram: bool = False


@dataclass
class Lane:
    participant: Participant
    out: dict[str, Item] = field(default_factory=dict)  # prompt id → item, in sending order
    running: str | None = None
    started: dict[str, float] = field(default_factory=dict)  # prompt id → execution_start
    # prompt id → node → its ui output, from `executed` events heard since its execution_start
    # (then its images need no /history request); cleared when the websocket comes and goes
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    online: bool = False
    problem: str = ""
    excluded: dict[int, str] = field(default_factory=dict)  # job → why it gets none of it
    preflighted: set[int] = field(default_factory=set)  # jobs it was checked for
    checking: set[int] = field(default_factory=set)
    done: int = 0
    accepted: dict[str, float] = field(default_factory=dict)  # prompt id → when /prompt took it
    heard: float = 0.0  # the last message its websocket brought (monotonic)
    jobs: InstanceJobs | None = None  # how its prompts are looked up: found when online

    @property
    def name(self) -> str:
        return self.participant.name

    @property
    def url(self) -> str:
        return self.participant.url


EventListener = Callable[[Lane, str, dict[str, Any]], None]


class LaneSocket:
    """Follows one participant's websocket for the queue's client id, reconnecting for ever;
    `on_event` gets the execution_* and executed events, `on_state` each change of online and
    offline."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        lane: Lane,
        client_id: str,
        on_event: EventListener,
        on_state: Callable[[Lane, bool, str], None],
    ) -> None:
        self._session = session
        self._lane = lane
        self._url = f"{lane.url}/ws?clientId={client_id}"
        self._on_event = on_event
        self._on_state = on_state

    async def run(self) -> None:
        delay = 0.2
        while True:
            try:
                async with self._session.ws_connect(self._url, heartbeat=20) as socket:
                    delay = 0.2
                    self._on_state(self._lane, True, "")
                    async for message in socket:
                        if message.type == aiohttp.WSMsgType.TEXT:
                            self._dispatch(message.data)
                        elif message.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                            break
                reason = "its websocket closed"
            except aiohttp.WSServerHandshakeError as exc:
                reason = f"HTTP {exc.status} instead of a websocket"
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                reason = classify(exc).message
            self._on_state(self._lane, False, reason)
            await asyncio.sleep(delay)
            delay = min(RECONNECT_MAX_S, delay * 2)

    def _dispatch(self, text: str) -> None:
        self._lane.heard = time.monotonic()  # whatever it says: its events still reach us
        if '"execution_' not in text and '"executed"' not in text:
            return  # progress, executing, status…: none of the queue's business
        event = json_object(text)
        if event is not None and isinstance(event.get("data"), dict):
            self._on_event(self._lane, str(event.get("type")), event["data"])


def finished_from(kind: str, data: dict[str, Any]) -> Finished | None:
    """execution_success / _error / _interrupted as a Finished; None for other events."""
    prompt_id = str(data.get("prompt_id", ""))
    if kind == "execution_success":
        return Finished(prompt_id, True)
    if kind == "execution_interrupted":
        return Finished(prompt_id, False, "interrupted", interrupted=True)
    if kind == "execution_error":
        return Finished(
            prompt_id,
            False,
            node_error(data),
            out_of_vram="OutOfMemory" in str(data.get("exception_type", "")),
        )
    return None


def node_error(data: dict[str, Any]) -> str:
    """ "node 3 (ImageBlur): RuntimeError: …", from an execution_error or a history message."""
    node, kind = data.get("node_id", "?"), data.get("node_type", "?")
    message = str(data.get("exception_message", "")).strip().splitlines()
    exception = str(data.get("exception_type", "")).rsplit(".", 1)[-1]
    return f"node {node} ({kind}): {exception}: {message[0] if message else ''}".rstrip(": ")


def history_outcome(entry: dict[str, Any], prompt_id: str) -> Finished:
    """A /history entry as a Finished (ComfyUI keeps the run's messages there)."""
    status = entry.get("status") or {}
    if status.get("completed") or status.get("status_str") == "success":
        return Finished(prompt_id, True)
    for kind, data in status.get("messages") or []:
        if kind in ("execution_error", "execution_interrupted") and isinstance(data, dict):
            found = finished_from(kind, {**data, "prompt_id": prompt_id})
            if found is not None:
                return found
    return Finished(prompt_id, False, "it failed (its history says no more)")


class ImageMixUp(ValueError):
    """The file served under an item's name carries another prompt: another instance saving into
    the same output folder at the same moment got the same name and replaced it."""


class SaveFailed(Exception):
    """An image could not be written into the job's folder (full disk, no permission): the
    disk's fault, not the participant's nor the network's."""


async def collect(
    session: aiohttp.ClientSession,
    lane: Lane,
    item: Item,
    entry: dict[str, Any],
    folder: Path,
    prompt: Workflow,
) -> list[str]:
    """The item's images from whoever made them, bytes as served, named by job, item, seed and
    participant, each written whole or not at all; the paths written. Each image that carries
    its prompt (ComfyUI embeds the prompt it ran, as sent) must carry `prompt`."""
    stem = "_".join(
        part
        for part in (
            f"job{item.job}",
            f"item{item.index:04}",
            "" if item.seed is None else f"seed{item.seed}",
            file_stem(lane.name),
        )
        if part
    )
    written = []
    for number, image in enumerate(output_images(entry)):
        data = await fetch_image(session, lane.url, image)
        if not made_from(data, prompt):
            raise ImageMixUp(
                f"{image.filename} on {lane.name} holds another prompt's image (another instance"
                " saving into the same output folder replaced it)"
            )
        extension = file_name(image.filename).rpartition(".")[2] or "png"
        target = folder / f"{stem}_{number}.{extension}"
        try:
            await asyncio.to_thread(atomic_write_bytes, target, data)
        except OSError as exc:
            raise SaveFailed(f"cannot save into {folder}: {exc.strerror or exc}") from exc
        written.append(str(target))
    return written


def made_from(data: bytes, prompt: Workflow) -> bool:
    """Whether an image was made from `prompt`, as far as it tells (one without an embedded
    prompt, e.g. from --disable-metadata, tells nothing and passes)."""
    try:
        embedded = embedded_texts(data).get("prompt")
    except ValueError:  # not a PNG, WebP or MP4
        return True
    if embedded is None:
        return True
    try:
        return bool(parse_json(embedded) == prompt)
    except (ValueError, RecursionError):
        return False


def took_s(lane: Lane, prompt_id: str) -> float | None:
    started = lane.started.pop(prompt_id, None)
    return None if started is None else time.monotonic() - started
