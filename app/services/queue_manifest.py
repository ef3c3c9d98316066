"""A job's manifest: every item with its seed, sweep values, state, participant and files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from app.services.queue_db import Job, QueueDb
from app.services.storage import atomic_write_text


def manifest_path(job: Job, root: Path | None = None) -> Path:
    """`root`: the dispatching machine's queue folder (see Job.folder)."""
    return job.folder(root) / f"job-{job.id:05}.manifest.json"


def manifest(store: QueueDb, job: Job) -> dict[str, Any]:
    return {
        "job": job.id,
        "name": job.name,
        "workflow_key": job.workflow_key,
        "created": job.created,
        "ended": job.ended,
        "cancelled": job.cancelled,
        "items": [
            {
                "index": item.index,
                "seed": item.seed,
                "vary": {f"{node}.{name}": value for node, name, value in item.overrides},
                "state": item.state.value,
                "participant": item.participant,
                "prompt_id": item.prompt_id,
                "seconds": None
                if item.finished_at is None or item.sent_at is None
                else round(item.finished_at - item.sent_at, 3),
                "files": [Path(f).name for f in item.files],
                "error": item.error,
            }
            for item in store.items(job.id)
        ],
    }


def write_manifest(store: QueueDb, job: Job, root: Path | None = None) -> Path:
    path = manifest_path(job, root)
    atomic_write_text(path, json.dumps(manifest(store, job), indent=2) + "\n")
    return path
