"""`comfy-fleet run` and `comfy-fleet test-fleet`: distributed jobs on the running master."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import Awaitable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from app.cli.common import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK, UsageError
from app.cli.workflow import FILE_HELP, load_prompt
from app.core.config import FleetConfig
from app.core.errors import ComfyFleetError
from app.core.model_script import missing_models_script, refused_models
from app.core.runs import Phase, Progress, RunResult
from app.core.workflow import PreflightResult, Workflow
from app.services import run_once
from app.services.comfy_client import classify
from app.services.job_service import JOBS_HTTP_TIMEOUT, JobService
from app.services.jobs import Run, RunRejected, save_outputs
from app.services.storage import unwritable

T = TypeVar("T")


def add_job_commands(commands: Any) -> None:
    run = commands.add_parser("run", help="run a workflow across the fleet")
    run.add_argument("workflow", type=Path, metavar="WORKFLOW", help=FILE_HELP)
    run.add_argument("--workers", help="comma-separated worker names (default: every enabled one)")
    run.add_argument("--out", type=Path, metavar="DIR", help="save the images into DIR")
    run.add_argument("--json", action="store_true", help="print one JSON object")
    run.add_argument(
        "--drop-failing", action="store_true", help="leave out workers that fail the preflight"
    )
    test = commands.add_parser("test-fleet", help="prove every worker delivers (canary run)")
    test.add_argument("--json", action="store_true", help="print one JSON object")


def run_command(args: argparse.Namespace, config: FleetConfig) -> int:
    problem = unwritable(args.out) if args.out else ""
    if problem:
        raise UsageError(f"--out {args.out}: {problem}")
    workflow, file = load_prompt(args.workflow, config)
    names = [n.strip() for n in args.workers.split(",") if n.strip()] if args.workers else None
    return _readable(config, _run(args, config, workflow, names, file.model_sources))


def _readable(config: FleetConfig, job: Coroutine[Any, Any, int]) -> int:
    """Run a job; a network failure no layer below explained becomes one line, not a trace."""
    try:
        return asyncio.run(job)
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise ComfyFleetError(
            f"the master at {config.master.url}: {classify(exc).message}"
        ) from None


class Interrupted(Exception):
    """SIGINT or SIGTERM arrived."""


def stop_on_signals() -> asyncio.Event:
    """Ctrl-C and SIGTERM set the event instead of killing the command mid-run."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for name in ("SIGINT", "SIGTERM"):
        with contextlib.suppress(NotImplementedError, AttributeError):
            loop.add_signal_handler(getattr(signal, name), stop.set)
    return stop


async def unless_stopped(awaitable: Awaitable[T], stop: asyncio.Event) -> T:
    """The awaitable's result, or Interrupted (and the awaitable cancelled) if `stop` is set
    first."""
    task = asyncio.ensure_future(awaitable)
    waiter = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
    if not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        raise Interrupted
    return task.result()


async def _run(
    args: argparse.Namespace,
    config: FleetConfig,
    workflow: Workflow,
    names: list[str] | None,
    sources: dict[str, str],
) -> int:
    stop = stop_on_signals()
    async with aiohttp.ClientSession(timeout=JOBS_HTTP_TIMEOUT) as session:
        service = JobService(session, config)
        try:
            prepared = await unless_stopped(
                run_once.prepare(service, workflow, names, _decide(args.drop_failing, sources)),
                stop,
            )
        except Interrupted:
            print("Stopped before anything was sent.", file=sys.stderr)
            return EXIT_INTERRUPTED
        except run_once.PreflightRefused:
            print("Preflight failed; nothing was sent (--drop-failing leaves workers out).")
            return EXIT_FAILURE
        for note in prepared.notes:
            print(f"note: {note}", file=sys.stderr)
        listener = (lambda p: None) if args.json else _print_progress
        run = run_once.start(service, prepared, listener)
        try:
            result = await unless_stopped(run.execute(workflow), stop)
        except Interrupted:
            return await _interrupt(run)
        except RunRejected as exc:
            print(f"The workflow was rejected:\n{exc}", file=sys.stderr)
            return EXIT_FAILURE
        for warning in result.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        saved = await save_outputs(session, config.master.url, result, args.out) if args.out else []
        if args.out:
            print(f"saved {len(saved)} image(s) into {args.out}", file=sys.stderr)
    _print_result(result, saved, args.json)
    master_part = result.participants[0]
    return EXIT_OK if master_part.phase is Phase.DONE else EXIT_FAILURE


def _decide(drop_failing: bool, sources: dict[str, str]) -> run_once.Decide:
    """Print what the preflight found; run without the failing workers only if asked to."""

    async def decide(checks: list[PreflightResult]) -> bool:
        _print_preflight(checks, sources)
        return drop_failing

    return decide


async def _interrupt(run: Run) -> int:
    print("Interrupting every participant's part of the run…", file=sys.stderr, flush=True)
    for stopped in await run.interrupt():
        print(f"  {stopped.describe()}", file=sys.stderr)
    return EXIT_INTERRUPTED


def _print_result(result: RunResult, saved: list[Path], as_json: bool) -> None:
    if as_json:
        print(json.dumps(result.as_json([str(path) for path in saved]), indent=2))
        return
    for number, output in enumerate(result.outputs):
        where = f"\t{saved[number]}" if saved else ""
        print(f"{output.image.filename}\t{output.participant or '?'}\tseed {output.seed}{where}")


def _print_preflight(checks: list[PreflightResult], sources: dict[str, str]) -> None:
    for check in checks:
        print(f"{check.participant}: {check.summary()}")
    if any(c.missing_models for c in checks):
        print("\n" + missing_models_script(checks, sources))
        for refused in refused_models(checks, sources):
            print(f"left out of the script: {refused}", file=sys.stderr)


def _print_progress(progress: Progress) -> None:
    if progress.phase in (Phase.DONE, Phase.FAILED, Phase.SKIPPED, Phase.INTERRUPTED):
        print(f"{progress.name}: {progress.describe()}", file=sys.stderr)


def test_fleet_command(args: argparse.Namespace, config: FleetConfig) -> int:
    reports: list[Any] = []

    async def canary() -> int:
        reports.extend(await _test_fleet(config))
        return EXIT_OK

    _readable(config, canary())
    if args.json:
        print(json.dumps({"participants": [r.as_json() for r in reports]}, indent=2))
    else:
        for report in reports:
            took = "" if report.seconds is None else f" in {report.seconds:.2f} s"
            mark = "✔ delivered" if report.delivered else f"✘ {report.error}"
            print(f"{report.name}: {mark}{took if report.delivered else ''}")
    return EXIT_OK if all(r.delivered for r in reports) else EXIT_FAILURE


async def _test_fleet(config: FleetConfig) -> list[Any]:
    async with aiohttp.ClientSession(timeout=JOBS_HTTP_TIMEOUT) as session:
        return await JobService(session, config).test_fleet()
