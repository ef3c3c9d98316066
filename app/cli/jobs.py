"""`comfy-fleet run` and `comfy-fleet test-fleet`: distributed jobs on the running master."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import aiohttp

from app.cli.common import EXIT_FAILURE, EXIT_OK
from app.core.config import FleetConfig
from app.core.errors import ComfyFleetError
from app.core.runs import Phase, Progress
from app.core.workflow import PreflightResult, Workflow, load_workflow, missing_models_script
from app.services.job_service import JOBS_HTTP_TIMEOUT, JobService
from app.services.jobs import RunRejected, save_outputs


def add_job_commands(commands: Any) -> None:
    run = commands.add_parser("run", help="run an API-format workflow across the fleet")
    run.add_argument("workflow", type=Path, metavar="WORKFLOW.json")
    run.add_argument("--workers", help="comma-separated worker names (default: every enabled one)")
    run.add_argument("--out", type=Path, metavar="DIR", help="save the images into DIR")
    run.add_argument("--json", action="store_true", help="print one JSON object")
    run.add_argument(
        "--drop-failing", action="store_true", help="leave out workers that fail the preflight"
    )
    test = commands.add_parser("test-fleet", help="prove every worker delivers (canary run)")
    test.add_argument("--json", action="store_true", help="print one JSON object")


def run_command(args: argparse.Namespace, config: FleetConfig) -> int:
    try:
        workflow = load_workflow(args.workflow.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ComfyFleetError(f"cannot read {args.workflow}: {exc.strerror}") from None
    names = [n.strip() for n in args.workers.split(",") if n.strip()] if args.workers else None
    return asyncio.run(_run(args, config, workflow, names))


async def _run(
    args: argparse.Namespace, config: FleetConfig, workflow: Workflow, names: list[str] | None
) -> int:
    async with aiohttp.ClientSession(timeout=JOBS_HTTP_TIMEOUT) as session:
        service = JobService(session, config)
        master, workers = service.participants(names)
        missing = await service.sync_or_explain()
        if missing:
            print(f"warning: {missing}", file=sys.stderr)
            workers = []
        checks = await service.preflight(workflow, [master, *workers])
        failing = {c.participant for c in checks if not c.ok}
        if failing:
            _print_preflight(checks)
            if "master" in failing or not args.drop_failing:
                print("Preflight failed; nothing was sent (--drop-failing leaves workers out).")
                return EXIT_FAILURE
            workers = [w for w in workers if w.name not in failing]
        listener = (lambda p: None) if args.json else _print_progress
        run = service.start([master, *workers], listener, use_extension=not missing)
        try:
            result = await run.execute(workflow)
        except RunRejected as exc:
            print(f"The workflow was rejected:\n{exc}", file=sys.stderr)
            return EXIT_FAILURE
        for warning in result.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        if args.out:
            saved = await save_outputs(session, master.url, result, args.out)
            print(f"saved {len(saved)} image(s) into {args.out}", file=sys.stderr)
    if args.json:
        print(json.dumps(result.as_json(), indent=2))
    else:
        for output in result.outputs:
            print(f"{output.image.filename}\t{output.participant or '?'}\tseed {output.seed}")
    master_part = result.participants[0]
    return EXIT_OK if master_part.phase is Phase.DONE else EXIT_FAILURE


def _print_preflight(checks: list[PreflightResult]) -> None:
    for check in checks:
        print(f"{check.participant}: {check.summary()}")
    if any(c.missing_models for c in checks):
        print("\n" + missing_models_script(checks))


def _print_progress(progress: Progress) -> None:
    if progress.phase in (Phase.DONE, Phase.FAILED, Phase.SKIPPED, Phase.INTERRUPTED):
        print(f"{progress.name}: {progress.describe()}", file=sys.stderr)


def test_fleet_command(args: argparse.Namespace, config: FleetConfig) -> int:
    reports = asyncio.run(_test_fleet(config))
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
