"""Headless commands over the same services the desktop app uses."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from app import APP_ID, __version__
from app.cli.cloud import add_cloud_commands, cloud_command
from app.cli.common import EXIT_FAILURE, EXIT_USAGE, UsageError, load_config
from app.cli.fleet import add_status_command, add_supervisor_commands, status_command
from app.cli.jobs import add_job_commands, run_command, test_fleet_command
from app.cli.queue import add_queue_commands, queue_command
from app.cli.service import add_service_commands, service_command
from app.cli.settings import add_settings_commands, config_command, master_command, worker_command
from app.cli.supervise import down_command, logs_command, propose_command, up_command
from app.cli.tunnel import add_tunnel_commands, tunnel_command
from app.cli.workflow import add_workflow_commands, workflow_command
from app.core.errors import ComfyFleetError, ConfigError
from app.core.queue_url import QUEUE_URL_ENV
from app.services.launch_plan import state_file
from app.services.paths import AppPaths, resolve_paths


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=APP_ID,
        description="ComfyFleet: run ComfyUI on many GPUs. Without a command, opens the app.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--config", metavar="PATH", help="config file (env COMFY_FLEET_CONFIG)")
    parser.add_argument(
        "--queue-url",
        metavar="URL",
        help="the fleet queue on a PostgreSQL server (postgresql://user@host/db; env"
        f" {QUEUE_URL_ENV}, setting app.queue_url); without one, the local file",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_settings_commands(commands)
    add_status_command(commands)
    add_supervisor_commands(commands)
    add_tunnel_commands(commands)
    add_job_commands(commands)
    add_queue_commands(commands)
    add_workflow_commands(commands)
    add_cloud_commands(commands)
    add_service_commands(commands)
    demo = commands.add_parser("demo", help="open the app on a simulated fleet")
    demo.add_argument(
        "--workers", type=int, default=4, help="simulated workers (default 4: 2 local, 2 remote)"
    )
    return parser


# Options whose value may itself start with "--": argparse would take that for a flag.
DASHED_VALUES = ("--extra-args",)


def parse_command_line(argv: list[str]) -> argparse.Namespace:
    """`--extra-args "--lowvram"` as documented: glued into `--extra-args=--lowvram` first."""
    glued: list[str] = []
    words = iter(argv)
    for word in words:
        if word == "--":
            glued += [word, *words]
            break
        value = next(words, None) if word in DASHED_VALUES else None
        glued.append(word if value is None else f"{word}={value}")
    return build_parser().parse_args(glued)


def run(args: argparse.Namespace) -> int:
    """Run one headless command; returns the exit status."""
    paths = resolve_paths(args.config)
    handlers: dict[str, Callable[[argparse.Namespace, AppPaths], int]] = {
        "config": config_command,
        "master": master_command,
        "worker": worker_command,
        "status": lambda a, p: status_command(a, load_config(p)[1], state_file(p)),
        "up": lambda a, p: up_command(a, load_config(p)[1], p),
        "down": lambda a, p: down_command(p),
        "logs": logs_command,
        "propose": lambda a, p: propose_command(a, *load_config(p)),
        "tunnel": lambda a, p: tunnel_command(a, p, *load_config(p)),
        "run": lambda a, p: run_command(a, load_config(p)[1]),
        "test-fleet": lambda a, p: test_fleet_command(a, load_config(p)[1]),
        "queue": lambda a, p: queue_command(a, p, *load_config(p)),
        "workflow": lambda a, p: workflow_command(a, load_config(p)[1]),
        "cloud": lambda a, p: cloud_command(a, *load_config(p)),
        "service": lambda a, p: service_command(a, p, *load_config(p)),
    }
    try:
        return handlers[args.command](args, paths)
    except (ConfigError, UsageError) as exc:
        print(f"{APP_ID}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ComfyFleetError as exc:
        print(f"{APP_ID}: error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
