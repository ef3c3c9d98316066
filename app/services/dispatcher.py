"""The fleet queue's dispatcher: keeps every participant's GPU busy with the queue's items.

Each participant holds up to DEPTH items (one running, one waiting in its own ComfyUI queue, so
its GPU never idles for a round trip); who gets the next item is planned by earliest expected
finish from measured speeds. Every step is written to the store first, so that a dispatcher
that dies loses nothing: the next one reconciles what was out against each instance's /queue
and /history."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from app.core.queue import DEPTH, OUT, ItemState, SpeedBook, item_workflow, plan
from app.core.queue import Lane as PlanLane
from app.core.runs import Participant
from app.core.workflow import PreflightResult, Workflow, rejection_from_answer
from app.services.comfy_client import classify
from app.services.instance_jobs import InstanceJobs, Where, history_entry, queued_ids
from app.services.queue_db import Item, Job, QueueDb
from app.services.queue_lane import (
    Finished,
    ImageMixUp,
    Lane,
    LaneSocket,
    SaveFailed,
    collect,
    finished_from,
    history_outcome,
    took_s,
)
from app.services.queue_manifest import write_manifest
from app.services.tasks import FailureListener, OwnedTasks

log = logging.getLogger(__name__)
Preflight = Callable[[Workflow, Participant], Awaitable[PreflightResult]]
STORE_POLL_S = 0.2  # how often another process's changes (queue add, cancel) are looked for
# Silence after which what a participant holds is looked up in its own queue and history: its
# events can be missed (ComfyUI keeps one socket per client id, and the cleanup of a replaced one
# can drop the new one's registration).
AUDIT_S = 5.0
PREFLIGHT_RETRY_S = 2.0
HTTP_ERRORS = (aiohttp.ClientError, OSError, TimeoutError, ValueError)


@dataclass(frozen=True)
class LaneStatus:
    name: str
    online: bool
    out: int
    done: int
    problem: str


class Dispatcher:
    def __init__(
        self,
        store: QueueDb,
        session: aiohttp.ClientSession,
        participants: Sequence[Participant],
        preflight: Preflight | None = None,
        on_failure: FailureListener | None = None,
        audit_s: float = AUDIT_S,
        out_root: Path | None = None,
    ) -> None:
        """`out_root`: this machine's queue folder, for jobs whose folder is relative (queued
        on a server shared by machines)."""
        self.store = store
        self._out_root = out_root
        self.audit_s = audit_s
        self._session = session
        self.lanes = {p.name: Lane(p) for p in participants}
        self.speeds = SpeedBook()
        self._preflight = preflight
        self._client_id = store.client_id()
        self._wake = asyncio.Event()
        self._tasks = OwnedTasks(on_failure)
        self._listeners: list[Callable[[], None]] = []
        self._workflows: dict[int, Workflow] = {}
        self._jobs: dict[int, Job] = {}
        self._cancelled: set[int] = set()
        self._stopping: set[str] = set()
        self._sockets: dict[str, asyncio.Task[None]] = {}
        self._running = False

    def subscribe(self, listener: Callable[[], None]) -> None:
        """Called after every change the dispatcher makes (the store has the details)."""
        self._listeners.append(listener)

    def status(self) -> list[LaneStatus]:
        return [
            LaneStatus(lane.name, lane.online, len(lane.out), lane.done, lane.problem)
            for lane in self.lanes.values()
        ]

    async def run(self, stop: asyncio.Event) -> None:
        """Dispatch until `stop` is set; what is out stays out (the next dispatcher follows it)."""
        self._requeue_orphans()
        self._running = True
        for lane in self.lanes.values():
            self._follow(lane)
        self._tasks.spawn(self._watch_store(), "watching the queue")
        self._tasks.spawn(self._audit(), "auditing what is out")
        stopping = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                waker = asyncio.ensure_future(self._wake.wait())
                await asyncio.wait({waker, stopping}, return_when=asyncio.FIRST_COMPLETED)
                waker.cancel()
                self._wake.clear()
                if not stop.is_set():
                    self._schedule()
        finally:
            self._running = False
            stopping.cancel()
            await self._tasks.cancel_all()

    def set_participants(self, participants: Sequence[Participant]) -> None:
        """The fleet changed (a worker added, removed, its address changed): newcomers get work,
        the items out on those that left go back to the queue."""
        wanted = {p.name: p for p in participants}
        for name, lane in list(self.lanes.items()):
            if wanted.get(name) != lane.participant:
                self._drop(lane)
        for name, participant in wanted.items():
            if name not in self.lanes:
                self.lanes[name] = Lane(participant)
                if self._running:
                    self._follow(self.lanes[name])
        self._changed()

    def _follow(self, lane: Lane) -> None:
        socket = LaneSocket(self._session, lane, self._client_id, self._event, self._state)
        self._sockets[lane.name] = self._tasks.spawn(socket.run(), f"following {lane.name}")

    def _drop(self, lane: Lane) -> None:
        del self.lanes[lane.name]
        task = self._sockets.pop(lane.name, None)
        if task is not None:
            task.cancel()
        if lane.out:
            self._tasks.spawn(
                self._withdraw(lane.url, list(lane.out)), f"withdrawing from {lane.name}"
            )
        for item in lane.out.values():
            self._lose(item, f"{lane.name} is no longer in the fleet")
        lane.out.clear()

    async def _withdraw(self, url: str, prompt_ids: list[str]) -> None:
        """What a participant that left still holds: deleted from its queue, or interrupted
        (its items run elsewhere now; where it is gone already, nothing is to be done)."""
        try:
            await (await InstanceJobs.detect(self._session, url)).cancel(prompt_ids)
        except HTTP_ERRORS as exc:
            log.info("could not withdraw items from %s: %s", url, _why(exc))

    def _changed(self, room: bool = True) -> None:
        """`room`: a participant may have room, or an item may be waiting, that it had not."""
        if room:
            self._wake.set()
        for listener in self._listeners:
            try:
                listener()
            except Exception:  # a broken listener must not stop the queue
                log.exception("queue listener failed")

    def _requeue_orphans(self) -> None:
        """Items out on a participant that is no longer in the fleet go back to the queue."""
        for item in self.store.items(states=OUT):
            if item.participant not in self.lanes:
                self._lose(item, f"{item.participant} is no longer in the fleet")

    async def _watch_store(self) -> None:
        seen = self.store.data_version()
        while True:
            await asyncio.sleep(STORE_POLL_S)
            version = self.store.data_version()
            if version != seen:
                seen = version
                self.store_changed()

    # scheduling

    def _schedule(self) -> None:
        if self.store.paused():
            return
        ready = [lane for lane in self.lanes.values() if lane.online]
        room = sum(max(0, DEPTH - len(lane.out)) for lane in ready)
        if not room:
            return
        limit = room * 2 + 8
        fetched = self.store.waiting(limit)
        groups: dict[int, list[Item]] = {}
        for item in fetched:
            groups.setdefault(item.job, []).append(item)
        complete = len(fetched) < limit  # then every waiting item is among them
        for job, items in groups.items():
            # full lanes take part in the plan too: a fast one busy now may still finish an
            # item sooner than a slow one with room
            lanes = [lane for lane in ready if self._may_take(lane, job)]
            if not lanes:
                self._say_blocked(job, ready)
                continue
            key = self._job(job).workflow_key
            by_name = {lane.name: lane for lane in lanes}
            waiting = len(items) if complete else self.store.waiting_count(job)
            names = plan([self._plan_lane(lane, key) for lane in lanes], waiting)
            for name, item in zip(names, items, strict=False):
                self._send(by_name[name], item)

    def _plan_lane(self, lane: Lane, key: str) -> PlanLane:
        each = self.speeds.guess(lane.name, key)
        busy = each * len(lane.out)
        if lane.running in lane.started:
            busy -= min(each, time.monotonic() - lane.started[lane.running])
        return PlanLane(lane.name, len(lane.out), max(0.0, busy), each)

    def _may_take(self, lane: Lane, job: int) -> bool:
        if job in lane.excluded:
            return False
        workers = self._job(job).workers
        if workers is not None and lane.name.casefold() not in {w.casefold() for w in workers}:
            return False
        if self._preflight is not None and job not in lane.preflighted:
            if job not in lane.checking:  # asked once per connection
                lane.checking.add(job)
                self._tasks.spawn(self._check(lane, job), f"checking {lane.name} for job {job}")
            return False
        return True

    def _say_blocked(self, job: int, ready: list[Lane]) -> None:
        reasons = [f"{lane.name}: {lane.excluded[job]}" for lane in ready if job in lane.excluded]
        if reasons and len(reasons) == len(self.lanes):
            note = "no participant can run it: " + "; ".join(reasons)
            if self._job(job).note != note:
                self.store.set_note(job, note)
                self._jobs.pop(job, None)

    async def _check(self, lane: Lane, job: int) -> None:
        assert self._preflight is not None
        try:
            result = await self._preflight(self._workflow(job), lane.participant)
            if result.error:  # it could not be asked (a one-off 500, a timeout): ask again soon
                await asyncio.sleep(PREFLIGHT_RETRY_S)
        finally:
            lane.checking.discard(job)
        if not result.error:
            lane.preflighted.add(job)
            if not result.ok:  # it lacks nodes or models: none of this job's items
                lane.excluded[job] = result.summary()
        self._changed()

    def _job(self, job: int) -> Job:
        if job not in self._jobs:
            self._jobs[job] = self.store.job_brief(job)
        return self._jobs[job]

    def _workflow(self, job: int) -> Workflow:
        if job not in self._workflows:
            self._workflows[job] = self.store.workflow(job)
        return self._workflows[job]

    # one item out and back

    def _prompt(self, item: Item) -> Workflow:
        return item_workflow(
            self._workflow(item.job), item.spec, f"job{item.job}_item{item.index:04}"
        )

    def _send(self, lane: Lane, item: Item) -> None:
        prompt_id = str(uuid.uuid4())
        if not self.store.sent(item.id, lane.name, prompt_id):  # first: a crash loses nothing
            return  # (cancelled from another desktop meanwhile)
        lane.out[prompt_id] = item
        self._tasks.spawn(self._post(lane, item, prompt_id), f"sending to {lane.name}")

    async def _post(self, lane: Lane, item: Item, prompt_id: str) -> None:
        body = {
            "prompt": self._prompt(item),
            "client_id": self._client_id,
            "prompt_id": prompt_id,
            "extra_data": {"comfyfleet": {"job": item.job, "item": item.index}},
        }
        try:
            async with self._session.post(f"{lane.url}/prompt", json=body) as response:
                status = response.status
                answer = await response.json(content_type=None) if status != 200 else None
        except HTTP_ERRORS as exc:
            if lane.out.pop(prompt_id, None) is not None:
                self._lose(item, f"could not send it to {lane.name}: {_why(exc)}")
            self._changed()
            return
        if status == 200:
            if prompt_id in lane.out:
                lane.accepted[prompt_id] = time.monotonic()
            return
        if lane.out.pop(prompt_id, None) is None:
            return
        if status == 400:  # the workflow itself: it fails once, not once per GPU
            self.store.failed(item.id, rejection_from_answer(status, answer).text())
            self._ended(item)
        else:
            self._lose(item, f"{lane.name} refused it: HTTP {status}")
        self._changed()

    def _event(self, lane: Lane, kind: str, data: dict[str, Any]) -> None:
        prompt_id = str(data.get("prompt_id", ""))
        if prompt_id not in lane.out:
            return
        if kind == "execution_start":
            lane.running = prompt_id
            lane.started[prompt_id] = time.monotonic()
            lane.outputs[prompt_id] = {}
            self.store.running(lane.out[prompt_id].id)
            self._changed(room=False)
            return
        if kind == "executed":
            heard, output = lane.outputs.get(prompt_id), data.get("output")
            if heard is not None and isinstance(output, dict):
                heard[str(data.get("node"))] = output
            return
        finished = finished_from(kind, data)
        if finished is not None:
            outputs = lane.outputs.pop(prompt_id, None)
            self._finished(lane, finished, took_s(lane, prompt_id), outputs)

    async def _audit(self) -> None:
        while True:
            await asyncio.sleep(self.audit_s)
            for lane in list(self.lanes.values()):
                lane.accepted = {p: at for p, at in lane.accepted.items() if p in lane.out}
                now = time.monotonic()
                quiet = now - lane.heard > self.audit_s
                old = [p for p, at in lane.accepted.items() if now - at > self.audit_s]
                if lane.online and quiet and old:
                    await self._look_up(lane, old)

    async def _look_up(self, lane: Lane, prompt_ids: list[str]) -> None:
        """Prompts it took that nothing was heard of: still queued there → wait; finished →
        collected; gone → queued again."""
        try:
            places = await (await self._instance(lane)).places(prompt_ids)
            for prompt_id, place in places.items():
                if place.where in (Where.WAITING, Where.RUNNING) or prompt_id not in lane.out:
                    continue  # (or heard of while asking)
                log.info("%s: %s finished unheard; its history tells", lane.name, prompt_id)
                if place.entry is None:
                    self._lose(lane.out.pop(prompt_id), f"{lane.name} lost it")
                    self._changed()
                else:
                    outcome = history_outcome(place.entry, prompt_id)
                    self._finished(lane, outcome, None, place.entry.get("outputs"))
        except HTTP_ERRORS as exc:
            log.info("cannot audit %s: %s", lane.name, _why(exc))

    def _finished(
        self,
        lane: Lane,
        finished: Finished,
        took: float | None,
        outputs: dict[str, Any] | None = None,
    ) -> None:
        """`outputs`: its ui outputs when known (else its images are found in its /history)."""
        item = lane.out.pop(finished.prompt_id)
        lane.accepted.pop(finished.prompt_id, None)
        if lane.running == finished.prompt_id:
            lane.running = None
        self._stopping.discard(finished.prompt_id)
        if finished.ok:
            if took is not None:
                self.speeds.learn(lane.name, self._job(item.job).workflow_key, took)
            self._tasks.spawn(
                self._collect(lane, item, finished.prompt_id, outputs), "collecting images"
            )
        elif finished.interrupted and item.job in self._cancelled:
            self.store.cancelled(item.id)
            self._ended(item)
        elif finished.interrupted:
            self._lose(item, f"interrupted on {lane.name}")
        elif finished.out_of_vram:
            lane.excluded[item.job] = "out of VRAM for this workflow"
            self._lose(item, f"{lane.name} ran out of VRAM: {finished.error}")
        else:
            self.store.failed(item.id, f"{finished.error} (on {lane.name})")
            self._ended(item)
        self._changed()

    async def _collect(
        self, lane: Lane, item: Item, prompt_id: str, outputs: dict[str, Any] | None
    ) -> None:
        folder = self._job(item.job).folder(self._out_root)
        try:
            if outputs is not None:
                entry: dict[str, Any] | None = {"outputs": outputs}
            else:
                entry = await history_entry(self._session, lane.url, prompt_id)
            if entry is None:
                raise ValueError(f"{lane.name} has no history of it")
            files = await collect(self._session, lane, item, entry, folder, self._prompt(item))
        except SaveFailed as exc:
            self._hold(item, str(exc))
        except ImageMixUp as exc:
            self._lose(item, str(exc))
        except HTTP_ERRORS as exc:
            self._lose(item, f"its images could not be fetched from {lane.name}: {_why(exc)}")
        else:
            self.store.done(item.id, files)
            lane.done += 1
            self._ended(item)
            self._changed(room=False)  # its room was made when it finished
            return
        self._changed()

    def _hold(self, item: Item, cause: str) -> None:
        """Its images cannot be saved: the item waits again (no try counted: its participant
        did its part) and its job is paused until the user makes room and resumes it."""
        self.store.put_back(item.id, cause)
        if not self.store.job_brief(item.job).paused:
            log.warning("job %s paused: %s", item.job, cause)
            self.store.set_paused(True, item.job)
            self.store.set_note(item.job, f"paused: {cause}; make room, then resume it")

    def _lose(self, item: Item, cause: str) -> None:
        if self.store.lost(item.id, cause) is ItemState.FAILED:  # lost once too often
            self._ended(item)

    def _ended(self, item: Item) -> None:
        job = self.store.job_brief(item.job)
        if job.ended is not None:
            write_manifest(self.store, job, self._out_root)

    # participants coming and going

    async def _instance(self, lane: Lane) -> InstanceJobs:
        """How its prompts are looked up and stopped, found once each time it comes online."""
        if lane.jobs is None:
            lane.jobs = await InstanceJobs.detect(self._session, lane.url)
        return lane.jobs

    def _state(self, lane: Lane, online: bool, reason: str) -> None:
        lane.outputs.clear()  # events may have been missed: /history tells
        lane.jobs = None  # (it may come back as another version)
        if online:
            lane.problem = ""
            lane.excluded.clear()
            lane.preflighted.clear()
            lane.checking.clear()
            self._tasks.spawn(self._reconcile(lane), f"reconciling {lane.name}")
            return
        was = lane.online
        lane.online, lane.problem = False, reason
        if was or lane.out:
            self._tasks.spawn(self._lost_lane(lane, reason), f"{lane.name} went away")

    async def _lost_lane(self, lane: Lane, reason: str) -> None:
        """Its websocket closed: if the instance still answers, what it holds is followed again
        on reconnect; if not, it is gone and so are its items (they go elsewhere)."""
        try:
            await queued_ids(self._session, lane.url)
            return
        except HTTP_ERRORS:
            pass
        for prompt_id, item in list(lane.out.items()):
            lane.out.pop(prompt_id)
            self._lose(item, f"{lane.name} went offline: {reason}")
        lane.running = None
        self._changed()

    async def _reconcile(self, lane: Lane) -> None:
        """What the store says is out on this participant, against its own queue and history:
        still there → followed; finished → collected; gone → queued again."""
        out = {i.prompt_id: i for i in self.store.items(states=OUT) if i.participant == lane.name}
        try:
            places = await (await self._instance(lane)).places(p for p in out if p is not None)
        except HTTP_ERRORS as exc:
            lane.problem = f"cannot read its queue: {_why(exc)}"
            return
        for prompt_id, place in places.items():
            item = out[prompt_id]
            lane.out.setdefault(prompt_id, item)
            if place.where in (Where.WAITING, Where.RUNNING):
                lane.accepted.setdefault(prompt_id, time.monotonic())
                if place.where is Where.RUNNING:
                    lane.running = prompt_id
            elif place.entry is None:
                lane.out.pop(prompt_id, None)
                self._lose(item, f"it was no longer in {lane.name}'s queue")
            else:
                outcome = history_outcome(place.entry, prompt_id)
                self._finished(lane, outcome, None, place.entry.get("outputs"))
        lane.online = True
        self._stop_cancelled()
        self._changed()

    # cancelling

    def cancel(self, job: int) -> None:
        """Cancel a job from this process (another process's cancel is seen in the store)."""
        self.store.cancel(job)
        self.store_changed()

    def store_changed(self) -> None:
        """This process changed the store (added, paused, cancelled): act on it now."""
        self._cancelled = self.store.cancelled_jobs()
        self._stop_cancelled()
        self._changed()

    def _stop_cancelled(self) -> None:
        for lane in self.lanes.values():
            for prompt_id, item in list(lane.out.items()):
                if item.job in self._cancelled and prompt_id not in self._stopping:
                    self._stopping.add(prompt_id)
                    self._tasks.spawn(self._stop(lane, prompt_id), f"stopping on {lane.name}")

    async def _stop(self, lane: Lane, prompt_id: str) -> None:
        """Waiting in its queue: deleted (and cancelled here); running: interrupted (cancelled
        when it says so)."""
        try:
            asked = await (await self._instance(lane)).cancel([prompt_id])
            if asked[prompt_id] is Where.WAITING:
                item = lane.out.pop(prompt_id, None)
                if item is not None:
                    self.store.cancelled(item.id)
                    self._ended(item)
        except HTTP_ERRORS as exc:
            log.warning("cannot stop %s on %s: %s", prompt_id, lane.name, _why(exc))
            self._stopping.discard(prompt_id)
        self._changed()


def _why(exc: BaseException) -> str:
    if isinstance(exc, ValueError):
        return str(exc)
    if isinstance(exc, aiohttp.ClientResponseError):  # it answered, with an error
        return f"HTTP {exc.status} from {exc.request_info.url.path}"
    return classify(exc).message
