"""Where one ComfyUI has the prompts it took from us, and taking them back: through its jobs API
where it has one (0.38: one request per prompt, and a cancel that says whether it cancelled),
else through /queue, /history and /interrupt (0.3.64, whose answers 0.38 keeps)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import aiohttp

from app.core.health import has_jobs_api, parse_system_stats


class Where(StrEnum):
    WAITING = "waiting"  # in its queue
    RUNNING = "running"
    ENDED = "ended"  # in its history: `entry` says how it went
    UNKNOWN = "unknown"  # neither: lost (never a `{}` history taken for done)


@dataclass(frozen=True)
class Place:
    where: Where
    entry: dict[str, Any] | None = None  # a /history entry's outputs and status


class InstanceJobs:
    def __init__(self, session: aiohttp.ClientSession, url: str, jobs_api: bool) -> None:
        self._session = session
        self.url = url
        self.jobs_api = jobs_api

    @classmethod
    async def detect(cls, session: aiohttp.ClientSession, url: str) -> InstanceJobs:
        """The instance's version, from /system_stats, tells which way it is asked."""
        async with session.get(f"{url}/system_stats") as response:
            response.raise_for_status()
            stats = parse_system_stats(await response.json())
        return cls(session, url, has_jobs_api(stats.comfyui_version))

    async def places(self, prompt_ids: Iterable[str], histories: bool = True) -> dict[str, Place]:
        """Where each one is; `histories=False`: on 0.3.64 one that is not queued is UNKNOWN,
        its /history not read (enough to know there is nothing to stop)."""
        wanted = list(prompt_ids)
        if self.jobs_api:
            return {prompt_id: await self._job(prompt_id) for prompt_id in wanted}
        running, pending = await queued_ids(self._session, self.url)
        places = {}
        for prompt_id in wanted:
            if prompt_id in running or prompt_id in pending:
                places[prompt_id] = Place(Where.RUNNING if prompt_id in running else Where.WAITING)
                continue
            entry = await history_entry(self._session, self.url, prompt_id) if histories else None
            places[prompt_id] = Place(Where.UNKNOWN) if entry is None else Place(Where.ENDED, entry)
        return places

    async def cancel(self, prompt_ids: Iterable[str]) -> dict[str, Where]:
        """Each one taken out of its queue, or its run interrupted; what each was when asked
        (an interrupted one still ends with its execution_interrupted event)."""
        places = await self.places(prompt_ids, histories=False)
        asked = {p: place.where for p, place in places.items()}
        stoppable = [p for p, where in asked.items() if where in (Where.WAITING, Where.RUNNING)]
        if self.jobs_api:
            for prompt_id in stoppable:
                await self._post(f"/api/jobs/{prompt_id}/cancel", None)
            return asked
        waiting = [p for p in stoppable if asked[p] is Where.WAITING]
        if waiting:
            await self._post("/queue", {"delete": waiting})
        for prompt_id in stoppable:
            if asked[prompt_id] is Where.RUNNING:
                await self._post("/interrupt", {"prompt_id": prompt_id})
        return asked

    async def _job(self, prompt_id: str) -> Place:
        async with self._session.get(f"{self.url}/api/jobs/{prompt_id}") as response:
            if response.status == 404:
                return Place(Where.UNKNOWN)
            response.raise_for_status()
            job = await response.json()
        if not isinstance(job, dict):
            raise ValueError(f"/api/jobs/{prompt_id} is not a job")
        status = job.get("status")
        if status == "pending":
            return Place(Where.WAITING)
        if status == "in_progress":
            return Place(Where.RUNNING)
        entry = {"outputs": job.get("outputs") or {}, "status": job.get("execution_status") or {}}
        return Place(Where.ENDED, entry)

    async def _post(self, path: str, body: Any) -> None:
        async with self._session.post(f"{self.url}{path}", json=body) as response:
            response.raise_for_status()


async def history_entry(
    session: aiohttp.ClientSession, url: str, prompt_id: str
) -> dict[str, Any] | None:
    async with session.get(f"{url}/history/{prompt_id}") as response:
        response.raise_for_status()
        answer = await response.json()
    entry = answer.get(prompt_id) if isinstance(answer, dict) else None
    return entry if isinstance(entry, dict) else None


async def queued_ids(session: aiohttp.ClientSession, url: str) -> tuple[set[str], set[str]]:
    """(running, pending) prompt ids in an instance's own queue."""
    async with session.get(f"{url}/queue") as response:
        response.raise_for_status()
        queue = await response.json()

    def ids(name: str) -> set[str]:
        return {str(entry[1]) for entry in queue.get(name, []) if len(entry) > 1}

    return ids("queue_running"), ids("queue_pending")
