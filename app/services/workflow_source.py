"""A workflow file as the prompt to run: an API prompt as it is, a UI-format workflow (or an image
that only carries one) converted with the master's `/object_info` and its ComfyUI-Distributed
workers, as ComfyUI's own frontend converts it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import aiohttp

from app.core.codec import parse_json
from app.core.errors import ComfyFleetError
from app.core.image_meta import MAX_TEXT_BYTES, is_media
from app.core.ui_workflow import to_prompt
from app.core.workflow import Workflow, WorkflowError
from app.core.workflow_file import WorkflowFile, read_workflow, too_big
from app.services.comfy_client import classify
from app.services.distributed_sync import read_config

HTTP_ERRORS = (aiohttp.ClientError, OSError, TimeoutError)


def read_workflow_file(path: Path) -> WorkflowFile:
    """A text file too big for a workflow is refused before it is read (an image or video is
    read whole: its texts are capped as they are inflated)."""
    try:
        with path.open("rb") as handle:
            head = handle.read(16)
            size = os.fstat(handle.fileno()).st_size
            if not is_media(head) and size > MAX_TEXT_BYTES:
                raise WorkflowError(too_big(path.name, size))
            data = head + handle.read()
    except IsADirectoryError:
        raise ComfyFleetError(f"{path} is a folder, not a workflow file") from None
    except OSError as exc:
        raise ComfyFleetError(f"cannot read {path}: {exc.strerror}") from None
    return read_workflow(data, path.name)


async def prompt_of(
    file: WorkflowFile,
    session: aiohttp.ClientSession,
    master_url: str,
    object_info: dict[str, Any] | None = None,
) -> Workflow:
    """The prompt the file runs; a UI workflow is converted against the master (or against
    `object_info` when given, and then without Distributed workers)."""
    if file.prompt is not None:
        return file.prompt
    assert file.ui is not None
    workers: list[dict[str, Any]] = []
    if object_info is None:
        object_info = await _object_info(session, master_url)
        workers = await _distributed_workers(session, master_url)
    return to_prompt(file.ui, object_info, workers)


async def _object_info(session: aiohttp.ClientSession, master_url: str) -> dict[str, Any]:
    why = (
        f"a UI-format workflow is converted with the master's node list ({master_url}/object_info)"
    )
    try:
        async with session.get(f"{master_url}/object_info") as response:
            response.raise_for_status()
            info = parse_json(await response.read())
    except aiohttp.ClientResponseError as exc:
        raise WorkflowError(f"{why}: it answered HTTP {exc.status}") from None
    except HTTP_ERRORS as exc:
        raise WorkflowError(f"{why}: {classify(exc).message}") from None
    except ValueError:
        raise WorkflowError(f"{why}: its answer is not JSON") from None
    if not isinstance(info, dict):
        raise WorkflowError(f"{why}: its answer is not a node list")
    return info


async def node_list_if_known(
    session: aiohttp.ClientSession, master_url: str
) -> dict[str, Any] | None:
    """The master's /object_info, or None when it cannot be had now (checks that use it are
    then made from what the workflow itself says)."""
    try:
        return await _object_info(session, master_url)
    except WorkflowError:
        return None


async def _distributed_workers(
    session: aiohttp.ClientSession, master_url: str
) -> list[dict[str, Any]]:
    """For DistributedValue's per-worker values; none when the master has no Distributed."""
    try:
        config = await read_config(session, master_url)
    except (ComfyFleetError, *HTTP_ERRORS):
        return []
    workers = config.get("workers")
    return [w for w in workers if isinstance(w, dict)] if isinstance(workers, list) else []
