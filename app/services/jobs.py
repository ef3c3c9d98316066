"""Distributed runs through the master's API, followed on every participant's websocket."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp

from app.core import fingerprint
from app.core.codec import json_object, parse_json
from app.core.errors import ComfyFleetError
from app.core.names import file_name, file_stem
from app.core.runs import (
    MASTER,
    ImageRef,
    Output,
    Participant,
    Phase,
    Progress,
    RunResult,
    Stopped,
    attribute_by_order,
    output_images,
    seed_for,
)
from app.core.workflow import Rejection, Workflow, base_seed, rejection_from_answer
from app.services.comfy_client import MasterUnusable, classify, unusable
from app.services.storage import atomic_write_bytes

log = logging.getLogger(__name__)

Listener = Callable[[Progress], None]
CONNECT_TIMEOUT_S = 3.0
CONNECT_ATTEMPTS = 3
SETTLE_S = 5.0  # after the master is done, how long workers still running may take to say so
INTERRUPT_SETTLE_S = 5.0  # how long an interrupt keeps asking until the run's items are gone
INTERRUPT_POLL_S = 0.2


@dataclass
class _Asked:
    """What the interrupt rounds did on one participant."""

    interrupted: set[str] = field(default_factory=set)
    removed: set[str] = field(default_factory=set)
    left: int = 0
    error: str = ""

    def settle(self, items: list[tuple[str, bool]], error: str) -> None:
        """Items seen in this round were acted on; the next round shows whether they left."""
        self.error = error
        for prompt_id, running in items:
            (self.interrupted if running else self.removed).add(prompt_id)
        self.left = len(items)

    def stopped(self, name: str) -> Stopped:
        return Stopped(
            name,
            tuple(sorted(self.interrupted)),
            tuple(sorted(self.removed)),
            self.left,
            self.error,
        )


_DISPATCH_ERROR = re.compile(r"^(\d{3}), message='([^']*)', url='([^']+)'")


class DispatchFailed(ComfyFleetError):
    """The master could not hand a worker its part: that worker answered an error."""

    def __init__(self, participant: str, status: int, message: str) -> None:
        self.participant = participant
        self.reason = (
            f"the master could not hand it its part: it answered HTTP {status} ({message})"
        )
        super().__init__(
            f"{participant}: {self.reason}; nothing was queued on the master, and the other "
            "workers' parts were stopped. Run Test fleet, or run without it."
        )


class RunRejected(ComfyFleetError):
    def __init__(self, rejection: Rejection) -> None:
        super().__init__(rejection.text())
        self.rejection = rejection


@dataclass
class _Watch:
    """One participant's websocket and what it has told us."""

    participant: Participant
    progress: Progress
    socket: aiohttp.ClientWebSocketResponse | None = None


class Run:
    """One distributed run: start it, follow it, interrupt it, collect its images."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        master: Participant,
        workers: Sequence[Participant],
        listener: Listener = lambda progress: None,
        use_extension: bool = True,
    ) -> None:
        self._session = session
        self.master = master
        self.workers = list(workers)
        self._listener = listener
        self._use_extension = use_extension
        self.client_id = f"comfyfleet-{uuid.uuid4().hex}"
        self._watches = {p.name: _Watch(p, Progress(p.name)) for p in [master, *workers]}
        self._started = 0.0
        self._master_done = asyncio.Event()
        self._settled = asyncio.Event()
        self._workflow: Workflow = {}

    @property
    def progress(self) -> list[Progress]:
        return [w.progress for w in self._watches.values()]

    async def execute(self, workflow: Workflow, deadline_s: float = 3600.0) -> RunResult:
        """Queue the workflow, wait for the master to finish, return who delivered what."""
        self._workflow = workflow
        await asyncio.gather(*(self._connect(w) for w in self._watches.values()))
        if self._watches[MASTER].socket is None:
            reason = self._watches[MASTER].progress.error
            raise ComfyFleetError(f"the master at {self.master.url} is not reachable: {reason}")
        reachable = [w for w in self.workers if self._watches[w.name].socket is not None]
        readers = [asyncio.ensure_future(self._read(w)) for w in self._watches.values() if w.socket]
        try:
            try:
                prompt_id, worker_count = await self._queue(workflow, reachable)
            except DispatchFailed as exc:
                await self._dispatch_failed(exc)
                raise
            self._watches[MASTER].progress.prompt_id = prompt_id
            try:
                await asyncio.wait_for(self._master_done.wait(), deadline_s)
            except TimeoutError:
                await self.interrupt()
                raise ComfyFleetError(f"the run did not finish in {deadline_s:.0f} s") from None
            with contextlib.suppress(TimeoutError):  # workers' last words (an interrupt's)
                await asyncio.wait_for(self._settled.wait(), SETTLE_S)
        finally:
            for reader in readers:
                reader.cancel()
            await self._close()
        return await self._result(workflow, prompt_id, worker_count, reachable)

    async def _dispatch_failed(self, failure: DispatchFailed) -> None:
        """The master handed a worker its part and was refused: it queued none of its own,
        and the workers that took theirs are stopped (their images would go nowhere)."""
        self._update(self._watches[failure.participant], phase=Phase.FAILED, error=failure.reason)
        self._update(
            self._watches[MASTER],
            phase=Phase.FAILED,
            error="queued nothing: see " + failure.participant,
        )
        await self.interrupt(settle_s=2.0)

    async def interrupt(self, settle_s: float = INTERRUPT_SETTLE_S) -> list[Stopped]:
        """Stop every participant's part of this run, not only the master's; asks again until
        none of it is left in any queue (a worker may get its part a moment later)."""
        asked = {name: _Asked() for name in self._watches}
        deadline = asyncio.get_running_loop().time() + settle_s
        while True:
            rounds = await asyncio.gather(*(self._interrupt(w) for w in self._watches.values()))
            for watch, (left, error) in zip(self._watches.values(), rounds, strict=True):
                asked[watch.participant.name].settle(left, error)
            if all(a.left == 0 for a in asked.values()):
                break
            if asyncio.get_running_loop().time() >= deadline:
                break
            await asyncio.sleep(INTERRUPT_POLL_S)
        return [a.stopped(name) for name, a in asked.items()]

    async def _connect(self, watch: _Watch) -> None:
        """The participant's websocket; a proxy's one-off error (Runpod's 5xx) gets retries."""
        url = f"{watch.participant.url}/ws?clientId={self.client_id}"
        for attempt in range(CONNECT_ATTEMPTS):
            try:
                watch.socket = await self._session.ws_connect(
                    url, timeout=aiohttp.ClientWSTimeout(ws_close=CONNECT_TIMEOUT_S), heartbeat=30
                )
                return
            except aiohttp.WSServerHandshakeError as exc:
                reason = f"HTTP {exc.status} instead of a websocket"
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                reason = classify(exc).detail
                if reason == "connection refused":
                    break
            await asyncio.sleep(0.1 * (attempt + 1))
        self._update(watch, phase=Phase.SKIPPED, error=f"offline: {reason}")

    async def _queue(self, workflow: Workflow, workers: list[Participant]) -> tuple[str, int]:
        self._started = time.perf_counter()
        if self._use_extension:
            url = f"{self.master.url}/distributed/queue"
            body: dict[str, Any] = {
                "prompt": workflow,
                "client_id": self.client_id,
                "enabled_worker_ids": [w.worker_id for w in workers],
                "delegate_master": False,
            }
        else:
            url, body = (
                f"{self.master.url}/prompt",
                {"prompt": workflow, "client_id": self.client_id},
            )
        try:
            async with self._session.post(url, json=body) as response:
                status, text = response.status, await response.text(errors="replace")
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise unusable(self.master.url, classify(exc)) from None
        try:
            answer: Any = parse_json(text)
        except ValueError:
            answer = text
        if status != 200:
            refused = self._refused_dispatch(answer, workers)
            if refused is not None:
                raise refused
            raise RunRejected(rejection_from_answer(status, answer))
        if not isinstance(answer, dict) or not isinstance(answer.get("prompt_id"), str):
            raise MasterUnusable(
                f"the master at {self.master.url} accepted the run but gave no prompt id: "
                f"{text.strip()[:200] or '(empty answer)'}"
            )
        count = answer.get("worker_count", 0)
        return answer["prompt_id"], count if isinstance(count, int) else 0

    @staticmethod
    def _refused_dispatch(answer: Any, workers: list[Participant]) -> DispatchFailed | None:
        """ComfyUI-Distributed passes a worker's refusal of its part on as aiohttp words it:
        `{"error": "500, message='Internal Server Error', url='http://host:port/prompt'"}`."""
        error = answer.get("error") if isinstance(answer, dict) else None
        found = _DISPATCH_ERROR.match(error) if isinstance(error, str) else None
        if found is None:
            return None
        status, message, url = found.groups()
        for worker in workers:
            if url.startswith(worker.url):
                return DispatchFailed(worker.name, int(status), message)
        return None

    async def _read(self, watch: _Watch) -> None:
        assert watch.socket is not None
        async for message in watch.socket:
            if message.type == aiohttp.WSMsgType.TEXT:
                event = json_object(message.data)
                try:
                    if event is not None:
                        self._event(watch, event)
                except (AttributeError, KeyError, TypeError, ValueError) as exc:
                    log.warning(
                        "%s sent an event not in ComfyUI's shape: %s", watch.participant.name, exc
                    )
            elif message.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                break

    def _event(self, watch: _Watch, event: dict[str, Any]) -> None:
        kind, data = event.get("type"), event.get("data") or {}
        progress = watch.progress  # the client id is this run's alone: every event is ours
        if kind == "execution_start":
            self._update(watch, phase=Phase.RUNNING, prompt_id=str(data.get("prompt_id", "")))
        elif kind == "executing" and data.get("node") is not None:
            node = str(data["node"])
            class_type = self._workflow.get(node, {}).get("class_type", "")
            self._update(
                watch, phase=Phase.RUNNING, node=node, node_type=class_type, value=0, maximum=0
            )
        elif kind == "progress":
            self._update(watch, value=int(data.get("value", 0)), maximum=int(data.get("max", 0)))
        elif kind == "executed":
            images = [
                ImageRef(
                    str(i["filename"]), str(i.get("subfolder", "")), str(i.get("type", "output"))
                )
                for i in (data.get("output") or {}).get("images", [])
            ]
            self._update(watch, images=progress.images + images)
        elif kind == "execution_error":
            message = f"{data.get('node_type', '?')}: {data.get('exception_message', '').strip()}"
            self._finish(watch, Phase.FAILED, message)
        elif kind == "execution_interrupted":
            self._finish(watch, Phase.INTERRUPTED, "interrupted")
        elif kind == "executing" and data.get("node") is None and progress.phase is Phase.RUNNING:
            self._finish(watch, Phase.DONE)

    def _finish(self, watch: _Watch, phase: Phase, error: str = "") -> None:
        seconds = time.perf_counter() - self._started
        self._update(watch, phase=phase, error=error, node="", node_type="", seconds=seconds)
        if watch.participant.name == MASTER:
            self._master_done.set()
        if all(w.progress.phase is not Phase.RUNNING for w in self._watches.values()):
            self._settled.set()

    def _update(self, watch: _Watch, **changes: Any) -> None:
        for key, value in changes.items():
            setattr(watch.progress, key, value)
        self._listener(replace(watch.progress, images=list(watch.progress.images)))

    async def _close(self) -> None:
        for watch in self._watches.values():
            if watch.socket is not None:
                await watch.socket.close()

    async def _interrupt(self, watch: _Watch) -> tuple[list[tuple[str, bool]], str]:
        """One round on one participant: this run's items in its queue (id, running) after
        asking; or the error that stopped the asking."""
        url = watch.participant.url
        try:
            async with self._session.get(f"{url}/queue") as response:
                queue = await response.json()
            mine = [
                (str(item[1]), name == "queue_running")
                for name in ("queue_running", "queue_pending")
                for item in queue.get(name, [])
                if len(item) > 3 and (item[3] or {}).get("client_id") == self.client_id
            ]
            pending = [pid for pid, running in mine if not running]
            if pending:
                await self._session.post(f"{url}/queue", json={"delete": pending})
            for pid in (pid for pid, running in mine if running):
                await self._session.post(f"{url}/interrupt", json={"prompt_id": pid})
        except (aiohttp.ClientError, TimeoutError, ValueError, AttributeError) as exc:
            return [], classify(exc).detail if not isinstance(exc, ValueError) else str(exc)
        return mine, ""

    async def _result(
        self, workflow: Workflow, prompt_id: str, worker_count: int, sent: list[Participant]
    ) -> RunResult:
        outputs = await self._history_images(prompt_id)
        order = [MASTER] + [w.name for w in sent if self._watches[w.name].progress.prompt_id]
        counts = {n: len(self._watches[n].progress.images) for n in order if n != MASTER}
        if counts:
            counts[MASTER] = max(counts.values())
        names = attribute_by_order(len(outputs), order, counts)
        if names is None:
            names = await self._match_pixels(outputs, order)
        seed = base_seed(workflow)
        result_outputs = tuple(
            Output(image, name, seed_for(seed, order[1:], name))
            for image, name in zip(outputs, names, strict=True)
        )
        skipped = [w.name for w in self.workers if w.name not in order]
        for name in skipped:
            watch = self._watches[name]
            if watch.progress.phase is not Phase.SKIPPED:
                self._update(
                    watch,
                    phase=Phase.SKIPPED,
                    error="skipped by the master (it could not reach it)",
                )
        warnings = []
        if self._use_extension and worker_count < len(sent):
            warnings.append(
                f"{worker_count} of {len(sent)} workers took part; skipped: {', '.join(skipped)}"
            )
        made = {name for name in names}
        silent = [n for n in order[1:] if n not in made]
        if silent:
            warnings.append(
                f"no images reached the master from {', '.join(silent)}: "
                "run Test fleet to find out why"
            )
        return RunResult(
            prompt_id,
            worker_count,
            result_outputs,
            tuple(skipped),
            tuple(self.progress),
            tuple(warnings),
        )

    async def _history_images(self, prompt_id: str) -> list[ImageRef]:
        try:
            async with self._session.get(f"{self.master.url}/history/{prompt_id}") as response:
                history = (await response.json()).get(prompt_id, {})
            return output_images(history)
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError, AttributeError) as exc:
            raise MasterUnusable(
                f"the run finished, but the master's /history/{prompt_id} could not be read: "
                f"{exc or type(exc).__name__}"
            ) from None

    async def _match_pixels(self, outputs: list[ImageRef], order: list[str]) -> list[str]:
        """The master's outputs against each worker's own previews; the rest are the master's."""
        workers = {
            n: await self._prints(
                self._watches[n].participant.url, self._watches[n].progress.images
            )
            for n in order[1:]
        }
        return [
            fingerprint.closest(p, workers) or MASTER
            for p in await self._prints(self.master.url, outputs)
        ]

    async def _prints(self, url: str, refs: list[ImageRef]) -> list[bytes]:
        found = []
        for ref in refs:
            try:
                found.append(fingerprint.fingerprint(await fetch_image(self._session, url, ref)))
            except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
                log.warning("cannot compare %s from %s: %s", ref.filename, url, exc)
                found.append(b"")
        return found


async def fetch_image(session: aiohttp.ClientSession, url: str, image: ImageRef) -> bytes:
    async with session.get(f"{url}/view", params=image.query()) as response:
        response.raise_for_status()
        return await response.read()


async def save_outputs(
    session: aiohttp.ClientSession, url: str, result: RunResult, folder: Path
) -> list[Path]:
    """Every output image into `folder`, named by participant and seed; nothing overwritten."""
    saved = []
    for output in result.outputs:
        data = await fetch_image(session, url, output.image)
        who = file_stem(output.participant or "unknown")
        stem = "_".join(p for p in (who, str(output.seed or "")) if p)
        name = file_name(output.image.filename)
        target = folder / f"{stem}_{name}"
        number = 1
        while target.exists():
            target = folder / f"{stem}_{number}_{name}"
            number += 1
        try:
            await asyncio.to_thread(atomic_write_bytes, target, data)
        except OSError as exc:  # the disk's fault: not to be taken for the network's
            raise ComfyFleetError(f"cannot save into {folder}: {exc.strerror or exc}") from None
        saved.append(target)
    return saved
