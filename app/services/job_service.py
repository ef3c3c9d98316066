"""Distributed jobs for the CLI and the window: participants, sync, preflight, runs, canary."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from app.core.config import FleetConfig
from app.core.errors import ComfyFleetError
from app.core.health import Failure
from app.core.runs import MASTER, Participant, Phase, Progress, RunResult
from app.core.workflow import (
    Capabilities,
    PreflightResult,
    Workflow,
    canary_workflow,
    model_refs,
    preflight,
)
from app.services.comfy_client import classify, what_answers
from app.services.distributed_sync import (
    ExtensionMissing,
    SyncReport,
    read_config,
    stable_id,
    sync_workers,
)
from app.services.jobs import Listener, Run

# Jobs read long answers and hold websockets: no total limit, unlike the monitor's probes.
JOBS_HTTP_TIMEOUT = aiohttp.ClientTimeout(total=None, connect=5, sock_read=120)
CANARY_MARGIN_S = 30.0  # beyond the master's own wait for workers
DEFAULT_WORKER_TIMEOUT_S = 60.0
LACKS_EXTENSION = "the worker lacks the ComfyUI-Distributed extension: install it there"
# Left to the run to report ("offline: …"), as it reports every unreachable participant.
OFFLINE_FAILURES = frozenset({Failure.REFUSED, Failure.DNS, Failure.TIMEOUT, Failure.NETWORK})
UNREACHABLE_MASTER = (
    "finished its part but its images never reached the master: the master's address{where} is "
    "not reachable from that worker — start a tunnel for the master, set the master host in "
    "ComfyUI-Distributed, or open the master's port in the firewall"
)


@dataclass(frozen=True)
class CanaryReport:
    name: str
    delivered: bool
    seconds: float | None
    error: str

    def as_json(self) -> dict[str, Any]:
        seconds = None if self.seconds is None else round(self.seconds, 3)
        return {
            "name": self.name,
            "delivered": self.delivered,
            "seconds": seconds,
            "error": self.error or None,
        }


class JobService:
    """One per app (or CLI command); uses the given session, never opens its own."""

    def __init__(self, session: aiohttp.ClientSession, config: FleetConfig) -> None:
        self.session = session
        self.config = config
        self.extension_present = True  # as the last sync found it

    def participants(
        self, names: Sequence[str] | None = None
    ) -> tuple[Participant, list[Participant]]:
        """The master and the chosen workers (default: every enabled one)."""
        if names is not None:
            unknown = [n for n in names if self.config.worker(n) is None]
            if unknown:
                raise ComfyFleetError(f"no worker called {', '.join(map(repr, unknown))}")
        chosen = [
            w
            for w in self.config.workers
            if (w.enabled if names is None else w.name.casefold() in {n.casefold() for n in names})
        ]
        master = Participant(MASTER, self.config.master.url)
        workers = [Participant(w.name, w.url, stable_id(w)) for w in chosen]
        return master, workers

    async def sync(self, removed_ids: Sequence[str] = ()) -> SyncReport:
        return await sync_workers(self.session, self.config, removed_ids)

    async def sync_or_explain(self) -> str:
        """Sync the workers: "" when the master has ComfyUI-Distributed, else how to install it
        (jobs then run on the master alone)."""
        try:
            await self.sync()
        except ExtensionMissing as exc:
            self.extension_present = False
            return str(exc)
        self.extension_present = True
        return ""

    async def preflight(
        self, workflow: Workflow, participants: Sequence[Participant]
    ) -> list[PreflightResult]:
        return list(await asyncio.gather(*(self.preflight_one(workflow, p) for p in participants)))

    async def preflight_one(self, workflow: Workflow, participant: Participant) -> PreflightResult:
        folders = sorted({ref.folder for ref in model_refs(workflow)})
        try:
            object_info = await self._get(f"{participant.url}/object_info")
            listings = await asyncio.gather(
                *(self._get(f"{participant.url}/models/{f}") for f in folders)
            )
        except aiohttp.ClientResponseError as exc:
            where = exc.request_info.url.path
            return PreflightResult(
                participant.name, error=f"could not ask it: HTTP {exc.status} from {where}"
            )
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:  # in the table's words
            return PreflightResult(
                participant.name, error=f"could not ask it: {classify(exc).message}"
            )
        except ValueError:
            return PreflightResult(
                participant.name, error="could not ask it: its answer is not JSON"
            )
        caps = Capabilities(
            frozenset(object_info),
            {
                f: frozenset(str(x) for x in (files or []))
                for f, files in zip(folders, listings, strict=True)
            },
        )
        return preflight(participant.name, workflow, caps)

    async def _get(self, url: str) -> Any:
        async with self.session.get(url) as response:
            if response.status == 404 and "/models/" in url:
                return []  # a folder this ComfyUI does not know holds nothing
            response.raise_for_status()
            return await response.json()

    def start(
        self, participants: Sequence[Participant], listener: Listener, use_extension: bool = True
    ) -> Run:
        master, workers = participants[0], list(participants[1:])
        return Run(self.session, master, workers, listener, use_extension)

    async def test_fleet(self, listener: Listener = lambda p: None) -> list[CanaryReport]:
        """The model-free canary on the master and every enabled worker: who delivered."""
        master, workers = self.participants()
        try:
            await self.sync()
            settings = (await read_config(self.session, master.url)).get("settings", {})
        except ExtensionMissing as exc:
            return [CanaryReport(MASTER, False, None, str(exc))] + [
                CanaryReport(w.name, False, None, "the master has no ComfyUI-Distributed")
                for w in workers
            ]
        wait = float(settings.get("worker_timeout_seconds") or DEFAULT_WORKER_TIMEOUT_S)
        # A worker without the extension rejects its part and the master would wait `wait` s.
        unfit = {
            w.name: why
            for w, why in zip(
                workers, await asyncio.gather(*(self._unfit(w) for w in workers)), strict=True
            )
            if why
        }
        run = Run(self.session, master, [w for w in workers if w.name not in unfit], listener)
        result = await run.execute(canary_workflow(random.randrange(2**31)), wait + CANARY_MARGIN_S)
        reports = {p.name: await self._canary_report(p, result) for p in result.participants}
        for name, why in unfit.items():
            reports[name] = CanaryReport(name, False, None, why)
        return [reports[p.name] for p in (master, *workers)]

    async def _unfit(self, worker: Participant) -> str:
        """Why the canary is not sent to this worker ("" when it is): something that is not
        ComfyUI answers there (as `status` says), or a ComfyUI without the extension."""
        status = 0
        try:
            await self._get(f"{worker.url}/distributed/system_info")
            return ""
        except aiohttp.ClientResponseError as exc:
            status = exc.status
        except (aiohttp.ClientError, TimeoutError, ValueError):
            pass
        problem = await what_answers(self.session, worker.url)
        if problem is None:
            return LACKS_EXTENSION if status == 404 else ""
        return "" if problem.failure in OFFLINE_FAILURES else problem.message

    async def _canary_report(self, progress: Progress, result: RunResult) -> CanaryReport:
        delivered = result.delivered(progress.name)
        if delivered:
            return CanaryReport(progress.name, True, progress.seconds, "")
        if progress.name == MASTER:
            return CanaryReport(MASTER, False, progress.seconds, progress.error or "made no image")
        return CanaryReport(progress.name, False, progress.seconds, await self._why_not(progress))

    async def _why_not(self, progress: Progress) -> str:
        worker = self.config.worker(progress.name)
        url = worker.url if worker else ""
        if progress.error.startswith("offline"):
            return progress.error
        if progress.phase is Phase.SKIPPED:
            return await self._why_skipped(url)
        if progress.phase is Phase.FAILED and "master" not in progress.error.lower():
            return f"its part failed: {progress.error}"
        sent_to = await self._master_url_given(url, progress.prompt_id)
        return UNREACHABLE_MASTER.format(where=f" it was given ({sent_to})" if sent_to else "")

    async def _why_skipped(self, url: str) -> str:
        """The master checked the worker and left it out: is it down, or was that a one-off?"""
        problem = await what_answers(self.session, url)
        if problem is None:
            return (
                "the master left it out, yet it answers now: the master's check of it got an "
                "error once (a one-off HTTP 500?) — run Test fleet again"
            )
        if problem.failure is Failure.SERVER_ERROR:
            return f"it answers {problem.detail}: its ComfyUI is in trouble — look at its log"
        return "the master skipped it: the master cannot reach this worker (offline from there)"

    async def _master_url_given(self, url: str, prompt_id: str) -> str:
        """The master URL ComfyUI-Distributed told the worker to deliver to."""
        with contextlib.suppress(
            aiohttp.ClientError, TimeoutError, ValueError, IndexError, KeyError
        ):
            history = await self._get(f"{url}/history/{prompt_id}")
            prompt = history[prompt_id]["prompt"][2]
            for node in prompt.values():
                if "master_url" in node.get("inputs", {}):
                    return str(node["inputs"]["master_url"])
        return ""
