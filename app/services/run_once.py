"""The use case "run this workflow once across the fleet", for the CLI and the window alike:
who takes part (the chosen workers, only if the workflow is distributed), ComfyUI-Distributed
in step, the preflight (the failing ones dropped if the face says so), then the run."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from app.core.runs import MASTER, Participant
from app.core.workflow import MASTER_ONLY, PreflightResult, Workflow, is_distributed
from app.services.job_service import JobService
from app.services.jobs import Listener, Run

# Asked when some participants lack a node or model: True = run without them.
Decide = Callable[[list[PreflightResult]], Awaitable[bool]]


@dataclass(frozen=True)
class Prepared:
    participants: list[Participant]
    use_extension: bool
    notes: list[str] = field(default_factory=list)  # said to the user before the run


class PreflightRefused(Exception):
    """The master itself cannot run it, or the face chose not to run without the failing."""

    def __init__(self, checks: list[PreflightResult]) -> None:
        super().__init__("the preflight failed; nothing was sent")
        self.checks = checks


async def prepare(
    service: JobService, workflow: Workflow, names: Sequence[str] | None, decide: Decide
) -> Prepared:
    """Who runs it; raises PreflightRefused when the run should not start."""
    master, workers = service.participants(names)
    notes = []
    missing = await service.sync_or_explain()
    if missing:
        notes.append(missing)
        workers = []
    elif workers and not is_distributed(workflow):
        notes.append(MASTER_ONLY)
        workers = []
    checks = await service.preflight(workflow, [master, *workers])
    failing = {c.participant for c in checks if not c.ok}
    if failing:
        go = await decide(checks)  # (asked even when the master fails: the face shows why)
        if MASTER in failing or not go:
            raise PreflightRefused(checks)
    kept = [w for w in workers if w.name not in failing]
    return Prepared([master, *kept], service.extension_present, notes)


def start(service: JobService, prepared: Prepared, listener: Listener) -> Run:
    return service.start(prepared.participants, listener, use_extension=prepared.use_extension)
