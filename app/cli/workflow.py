"""`comfy-fleet workflow convert`: the API prompt of a UI-format workflow, or of an image."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp

from app.cli.common import EXIT_OK, read_text_file
from app.core.config import FleetConfig
from app.core.errors import ComfyFleetError
from app.core.workflow import Workflow
from app.services.job_service import JOBS_HTTP_TIMEOUT
from app.services.workflow_source import prompt_of, read_workflow_file

FILE_HELP = "a workflow: API or UI format (.json), or a PNG/WebP made by ComfyUI"


def add_workflow_commands(commands: Any) -> None:
    workflow = commands.add_parser("workflow", help="read and convert workflow files")
    verbs = workflow.add_subparsers(dest="verb", metavar="VERB", required=True)
    convert = verbs.add_parser(
        "convert", help="print the API prompt of a workflow file (JSON on stdout), not run"
    )
    convert.add_argument("file", type=Path, metavar="FILE", help=FILE_HELP)
    convert.add_argument(
        "--object-info",
        type=Path,
        metavar="FILE",
        help="the node list to convert with (a saved /object_info; default: the master's)",
    )


def workflow_command(args: argparse.Namespace, config: FleetConfig) -> int:
    info = None
    if args.object_info:
        try:
            info = json.loads(read_text_file(args.object_info, "a saved /object_info (.json)"))
        except ValueError as exc:
            raise ComfyFleetError(f"{args.object_info} is not JSON: {exc}") from None
    print(json.dumps(load_prompt(args.file, config, info), indent=2, ensure_ascii=False))
    return EXIT_OK


def load_prompt(
    path: Path, config: FleetConfig, object_info: dict[str, Any] | None = None
) -> Workflow:
    """The prompt a workflow file runs (a UI workflow is converted with the master's nodes)."""
    file = read_workflow_file(path)
    if not file.needs_conversion:
        assert file.prompt is not None
        return file.prompt

    async def convert() -> Workflow:
        async with aiohttp.ClientSession(timeout=JOBS_HTTP_TIMEOUT) as session:
            return await prompt_of(file, session, config.master.url, object_info)

    return asyncio.run(convert())
