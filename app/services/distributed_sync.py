"""Keep ComfyUI-Distributed on the master in step with the workers ComfyFleet manages."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import aiohttp

from app.core.codec import json_object
from app.core.config import FleetConfig, WorkerConfig, WorkerKind
from app.core.errors import ComfyFleetError
from app.core.net import join_args
from app.services.comfy_client import MasterUnusable, classify, unusable, what_answers

log = logging.getLogger(__name__)

INSTALL_HELP = (
    "ComfyUI-Distributed is not installed on the master ({url}). Install it with ComfyUI-Manager "
    "(search for 'ComfyUI-Distributed') or clone https://github.com/robertvoy/ComfyUI-Distributed "
    "into ComfyUI/custom_nodes, then restart the master. Until then jobs run on the master alone."
)


class ExtensionMissing(ComfyFleetError):
    def __init__(self, url: str) -> None:
        super().__init__(INSTALL_HELP.format(url=url))


@dataclass(frozen=True)
class SyncReport:
    created: tuple[str, ...]
    updated: tuple[str, ...]
    deleted: tuple[str, ...]
    ids: dict[str, str]  # worker name → its id in ComfyUI-Distributed


def stable_id(worker: WorkerConfig) -> str:
    """The configured id, else one derived from the name (the same on every sync)."""
    if worker.distributed_id:
        return worker.distributed_id
    return "fleet-" + (re.sub(r"[^a-z0-9]+", "-", worker.name.casefold()).strip("-") or "worker")


def worker_entry(worker: WorkerConfig) -> dict[str, Any]:
    """The worker as the extension stores it (`null` clears a field there)."""
    local = worker.kind is WorkerKind.LOCAL
    return {
        "name": worker.name,
        "host": None if local else worker.host,
        "port": worker.port,
        "cuda_device": int(worker.gpu) if local and worker.gpu and worker.gpu.isdigit() else None,
        "enabled": worker.enabled,
        "type": worker.kind.value,
        "extra_args": join_args(worker.extra_args) or None,
    }


def _differs(wanted: dict[str, Any], have: dict[str, Any]) -> bool:
    return any(have.get(key) != value for key, value in wanted.items())


async def read_config(session: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    """The master's Distributed config. ExtensionMissing when a ComfyUI without the extension
    answers; MasterUnusable (in the monitor's words) when it cannot be used at all."""
    route = f"{url}/distributed/config"
    try:
        async with session.get(route) as response:
            status, body = response.status, await response.read()
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise unusable(url, classify(exc)) from None
    data = json_object(body) if status == 200 else None
    if data is not None:
        return data
    problem = await what_answers(session, url)
    if problem is not None:
        raise unusable(url, problem)
    if status == 404:
        raise ExtensionMissing(url)
    said = body.decode("utf-8", "replace").strip().splitlines()[:1] or ["(empty)"]
    how = f"HTTP {status}" if status != 200 else "not JSON"
    raise MasterUnusable(
        f"the master at {url} answered {how} on /distributed/config: {said[0][:200]}"
    )


async def sync_workers(
    session: aiohttp.ClientSession, config: FleetConfig, removed_ids: Iterable[str] = ()
) -> SyncReport:
    """Create or update every configured worker on the master; delete the ones removed here."""
    url = config.master.url
    current = {str(w.get("id")): w for w in (await read_config(session, url)).get("workers", [])}
    created: list[str] = []
    updated: list[str] = []
    deleted: list[str] = []
    ids: dict[str, str] = {}
    for worker in config.workers:
        worker_id = stable_id(worker)
        ids[worker.name] = worker_id
        wanted = worker_entry(worker)
        have = current.get(worker_id)
        if have is not None and not _differs(wanted, have):
            continue
        await _post(
            session, f"{url}/distributed/config/update_worker", worker_id=worker_id, **wanted
        )
        (created if have is None else updated).append(worker.name)
    for worker_id in removed_ids:
        if worker_id in current and worker_id not in ids.values():
            await _post(session, f"{url}/distributed/config/delete_worker", worker_id=worker_id)
            deleted.append(str(current[worker_id].get("name", worker_id)))
    if created or updated or deleted:
        log.info("Distributed config synced: +%s ~%s -%s", created, updated, deleted)
    return SyncReport(tuple(created), tuple(updated), tuple(deleted), ids)


async def _post(session: aiohttp.ClientSession, url: str, **body: Any) -> None:
    try:
        async with session.post(url, json=body) as response:
            if response.status != 200:
                text = (await response.text(errors="replace"))[:300]
                raise ComfyFleetError(f"{url} answered HTTP {response.status}: {text}")
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise ComfyFleetError(f"{url}: {classify(exc).message}") from None
