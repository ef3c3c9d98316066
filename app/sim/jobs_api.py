"""0.38's jobs API (recordings/comfyui-0.38/routes.json, `GET /api/jobs` and the routes after
it): the queue and the history as jobs, and cancels that say whether they cancelled."""

from __future__ import annotations

import json
import uuid
from typing import Any

from aiohttp import web

from app.sim.engine import Engine, QueueItem

STATUSES = ("pending", "in_progress", "completed", "failed", "cancelled")
VISUAL = ("images", "video", "audio", "3d", "text")


class JobsApi:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/api/jobs", self.list_jobs),
            web.get("/api/jobs/{job_id}", self.get_job),
            web.post("/api/jobs/{job_id}/cancel", self.cancel_job),
            web.post("/api/jobs/cancel", self.cancel_jobs),
        ]

    async def list_jobs(self, request: web.Request) -> web.Response:
        query = request.query
        wanted = [s.strip().lower() for s in query.get("status", "").split(",") if s.strip()]
        bad = [s for s in wanted if s not in STATUSES]
        if bad:
            return _error(
                f"Invalid status value(s): {', '.join(bad)}. Valid values: {', '.join(STATUSES)}"
            )
        sort_by = query.get("sort_by", "created_at")
        if sort_by not in ("created_at", "execution_duration"):
            return _error("sort_by must be 'created_at' or 'execution_duration'")
        order = query.get("sort_order", "desc")
        if order not in ("asc", "desc"):
            return _error("sort_order must be 'asc' or 'desc'")
        limit: int | None = None
        if "limit" in query:
            try:
                limit = int(query["limit"])
            except ValueError:
                return _error("limit must be an integer")
            if limit <= 0:
                return _error("limit must be a positive integer")
        try:
            offset = max(0, int(query.get("offset", "0")))
        except ValueError:
            return _error("offset must be an integer")
        jobs = [j for j in self._all() if not wanted or j["status"] in wanted]
        if "workflow_id" in query:
            jobs = [j for j in jobs if j.get("workflow_id") == query["workflow_id"]]
        by = (lambda j: j.get("create_time") or 0) if sort_by == "created_at" else _duration
        jobs.sort(key=by, reverse=order == "desc")
        page = jobs[offset : None if limit is None else offset + limit]
        return web.json_response(
            {
                "jobs": page,
                "pagination": {
                    "offset": offset,
                    "limit": limit,
                    "total": len(jobs),
                    "has_more": offset + len(page) < len(jobs),
                },
            }
        )

    async def get_job(self, request: web.Request) -> web.Response:
        job_id = request.match_info["job_id"]
        engine = self.engine
        if engine.running is not None and engine.running.prompt_id == job_id:
            return web.json_response(_queued(engine.running, "in_progress", detail=True))
        for item in engine.pending:
            if item.prompt_id == job_id:
                return web.json_response(_queued(item, "pending", detail=True))
        entry = engine.history.get(job_id)
        if entry is None:
            return web.json_response({"error": "Job not found"}, status=404)
        return web.json_response(_finished(job_id, entry, detail=True))

    async def cancel_job(self, request: web.Request) -> web.Response:
        return web.json_response({"cancelled": self._cancel(request.match_info["job_id"])})

    async def cancel_jobs(self, request: web.Request) -> web.Response:
        try:
            data = json.loads(await request.text())
        except ValueError:
            return _error("Request body must be valid JSON")
        ids = data.get("job_ids") if isinstance(data, dict) else None
        if not isinstance(ids, list):
            return _error("job_ids must be a list")
        invalid = [i if isinstance(i, str) else repr(i) for i in ids if not canonical_uuid(i)]
        if invalid:
            return web.json_response(
                {"error": "job_ids contains invalid id(s)", "invalid_ids": invalid}, status=400
            )
        cancelled = [self._cancel(i) for i in ids]  # every one, not up to the first
        return web.json_response({"cancelled": any(cancelled)})

    def _cancel(self, job_id: str) -> bool:
        """Running: interrupted; pending: taken out of the queue; else nothing."""
        engine = self.engine
        if engine.running is not None and engine.running.prompt_id == job_id:
            engine.interrupt(job_id)
            return True
        if any(i.prompt_id == job_id for i in engine.pending):
            engine.delete_pending([job_id])
            return True
        return False

    def _all(self) -> list[dict[str, Any]]:
        engine = self.engine
        jobs = [_queued(engine.running, "in_progress")] if engine.running else []
        jobs += [_queued(item, "pending") for item in engine.pending]
        jobs += [_finished(pid, entry) for pid, entry in engine.history.items()]
        return jobs


def _error(text: str) -> web.Response:
    return web.json_response({"error": text}, status=400)


def canonical_uuid(value: Any) -> bool:
    """A str equal to str(uuid.UUID(value)): 0.38's test of a client's prompt or job id."""
    if not isinstance(value, str):
        return False
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False


def _queued(item: QueueItem, status: str, detail: bool = False) -> dict[str, Any]:
    job: dict[str, Any] = {
        "id": item.prompt_id,
        "status": status,
        "priority": item.number,
        "create_time": item.extra_data.get("create_time"),
        "outputs_count": 0,
        "previewable_outputs_count": 0,
        "workflow_id": _workflow_id(item.extra_data),
    }
    if detail:
        job["workflow"] = {"prompt": item.prompt, "extra_data": item.extra_data}
    return _pruned(job)


def _finished(prompt_id: str, entry: dict[str, Any], detail: bool = False) -> dict[str, Any]:
    number, _, prompt, extra, *_ = entry["prompt"]
    status = entry["status"]
    messages = {kind: data for kind, data in status["messages"]}
    if status["status_str"] == "success":
        state = "completed"
    else:
        state = "cancelled" if "execution_interrupted" in messages else "failed"
    ended: dict[str, Any] = next(
        (
            messages[k]
            for k in ("execution_success", "execution_error", "execution_interrupted")
            if k in messages
        ),
        {},
    )
    items = [
        (node, media, output)
        for node, ui in entry["outputs"].items()
        for media, outputs in ui.items()
        if isinstance(outputs, list)
        for output in outputs
        if isinstance(output, dict)
    ]
    start = messages.get("execution_start", {}).get("timestamp")
    job: dict[str, Any] = {
        "id": prompt_id,
        "status": state,
        "priority": number,
        "create_time": extra.get("create_time"),
        "execution_start_time": start,
        "execution_end_time": ended.get("timestamp"),
        "execution_error": messages.get("execution_error"),
        "outputs_count": len(items),
        "previewable_outputs_count": sum(1 for _, media, _ in items if media in VISUAL),
        "preview_output": _preview(items),
        "workflow_id": _workflow_id(extra),
    }
    if detail:
        job.update(
            outputs=entry["outputs"],
            execution_status=status,
            workflow={"prompt": prompt, "extra_data": extra},
        )
    return _pruned(job)


def _duration(job: dict[str, Any]) -> int:
    """Queued jobs (no times) count as 0."""
    return int(job.get("execution_end_time", 0) - job.get("execution_start_time", 0))


def _preview(items: list[tuple[str, str, dict[str, Any]]]) -> dict[str, Any] | None:
    """A saved visual output first, then any other (temp) one."""
    visual = [(n, m, o) for n, m, o in items if m in ("images", "video", "audio", "3d")]
    visual.sort(key=lambda i: i[2].get("type") != "output")
    if not visual:
        return None
    node, media, output = visual[0]
    return {**output, "nodeId": node, "mediaType": media}


def _workflow_id(extra: dict[str, Any]) -> Any:
    info = extra.get("extra_pnginfo")
    workflow = info.get("workflow") if isinstance(info, dict) else None
    return workflow.get("id") if isinstance(workflow, dict) else None


def _pruned(job: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in job.items() if v is not None}
