"""`comfy-fleet workflow convert|token`: the API prompt of any workflow file; download tokens."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
from pathlib import Path
from typing import Any

import aiohttp

from app.cli.common import EXIT_OK, read_text_file
from app.core.codec import parse_json
from app.core.config import FleetConfig
from app.core.errors import ComfyFleetError
from app.core.model_script import TOKEN_KEY, TOKEN_SITES
from app.core.workflow import Workflow
from app.core.workflow_file import WorkflowFile
from app.services.job_service import JOBS_HTTP_TIMEOUT
from app.services.secrets import SecretStore
from app.services.workflow_source import prompt_of, read_workflow_file

FILE_HELP = "a workflow: API or UI format (.json), or a PNG, WebP or MP4 made by ComfyUI"


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
    token = verbs.add_parser(
        "token", help="store a token for gated model downloads in the keyring (stdin or prompt)"
    )
    token.add_argument("site", choices=sorted(set(TOKEN_SITES.values())))


def workflow_command(args: argparse.Namespace, config: FleetConfig) -> int:
    if args.verb == "token":
        return _store_token(args.site)
    info = None
    if args.object_info:
        try:
            info = parse_json(read_text_file(args.object_info, "a saved /object_info (.json)"))
        except ValueError as exc:
            raise ComfyFleetError(f"{args.object_info} is not JSON: {exc}") from None
    prompt, _ = load_prompt(args.file, config, info)
    print(json.dumps(prompt, indent=2, ensure_ascii=False))
    return EXIT_OK


def _store_token(site: str) -> int:
    """The missing-models script reads it back when it runs (never written into it)."""
    if sys.stdin.isatty():
        token = getpass.getpass(f"Token for downloads from {site} (hidden): ")
    else:
        token = sys.stdin.readline().strip()
    SecretStore().set(TOKEN_KEY.format(site=site), token)
    print(f"Stored the {site} download token in the system keyring.")
    return EXIT_OK


def load_prompt(
    path: Path, config: FleetConfig, object_info: dict[str, Any] | None = None
) -> tuple[Workflow, WorkflowFile]:
    """The prompt a workflow file runs (a UI workflow is converted with the master's nodes),
    and the file as read."""
    file = read_workflow_file(path)
    if file.prompt is not None:
        return file.prompt, file

    async def convert() -> Workflow:
        async with aiohttp.ClientSession(timeout=JOBS_HTTP_TIMEOUT) as session:
            return await prompt_of(file, session, config.master.url, object_info)

    return asyncio.run(convert()), file
