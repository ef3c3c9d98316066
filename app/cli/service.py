"""`comfy-fleet service install|run`: the files that make a background service of the fleet
with no window (app.services.headless), and running it, its lines going to the journal."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import plistlib
import sys
from pathlib import Path
from typing import Any

from app.cli.common import EXIT_FAILURE, EXIT_OK, UsageError
from app.cli.jobs import stop_on_signals
from app.core.config import FleetConfig
from app.core.queue_url import check_queue_url
from app.core.service_files import (
    AGENT_LABEL,
    SERVICE,
    credential_problem,
    launch_agent,
    systemd_unit,
    windows_task,
)
from app.services.autostart import launch_command
from app.services.headless import run_headless
from app.services.paths import AppPaths
from app.services.sd_notify import Notifier
from app.services.secrets import SecretStore
from app.services.storage import ConfigStore

log = logging.getLogger(__name__)
PLATFORMS = ("linux", "darwin", "win32")


def add_service_commands(commands: Any) -> None:
    service = commands.add_parser(
        "service", help="the queue and the cloud guards as a background service, no window"
    )
    verbs = service.add_subparsers(dest="verb", required=True)
    install = verbs.add_parser(
        "install",
        help="write the service file: a systemd user unit, a macOS LaunchAgent or a Windows task",
    )
    here = sys.platform if sys.platform in PLATFORMS else "linux"
    install.add_argument("--platform", choices=PLATFORMS, default=here)
    install.add_argument(
        "--credential",
        action="append",
        default=[],
        metavar="NAME=FILE",
        help="a secret systemd hands over (LoadCredential), e.g. RUNPOD_API_KEY=/etc/comfy/key",
    )
    verbs.add_parser("run", help="dispatch the queue and run the cloud guards until stopped")


def service_command(
    args: argparse.Namespace, paths: AppPaths, store: ConfigStore, config: FleetConfig
) -> int:
    if args.verb == "install":
        return _install(args, paths)
    return _run(paths, store, config, args.queue_url)


def _install(args: argparse.Namespace, paths: AppPaths) -> int:
    credentials = {}
    for text in args.credential:
        name, _, path = text.partition("=")
        problem = credential_problem(name, path)
        if problem:
            raise UsageError(f"--credential {problem}")
        credentials[name] = path
    if credentials and args.platform != "linux":
        raise UsageError("--credential: only systemd hands credentials over (Linux)")
    command = [*launch_command(), "--config", str(paths.config_file)]
    if args.queue_url:  # (checked: it holds no password)
        command += ["--queue-url", check_queue_url(args.queue_url, "--queue-url")]
    home = Path.home()
    if args.platform == "linux":
        config_home = Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config")
        unit = config_home / "systemd" / "user" / f"{SERVICE}.service"
        _write(unit, systemd_unit(command, credentials).encode())
        print(f"wrote {unit}")
        enable = f"systemctl --user daemon-reload && systemctl --user enable --now {SERVICE}"
        print(f"start it: {enable}")
        print(f"its log: journalctl --user -u {SERVICE} -f")
    elif args.platform == "darwin":
        agent = home / "Library" / "LaunchAgents" / f"{AGENT_LABEL}.plist"
        log_file = str(paths.log_dir / "service.log")
        _write(agent, plistlib.dumps(launch_agent(command, log_file)))
        print(f"wrote {agent}")
        print(f"start it: launchctl bootstrap gui/$(id -u) {agent}")
    else:
        task = paths.data_dir / f"{SERVICE}-task.xml"
        _write(task, windows_task(command).encode("utf-16"))
        print(f"wrote {task}")
        print(f'register it: schtasks /Create /TN ComfyFleet /XML "{task}"')
    return EXIT_OK


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _run(paths: AppPaths, store: ConfigStore, config: FleetConfig, queue_url: str | None) -> int:
    async def serve() -> None:
        def say(line: str) -> None:
            print(line, flush=True)  # (under systemd: the journal)

        await run_headless(
            paths, store, config, SecretStore(), stop_on_signals(), say, Notifier(), queue_url
        )

    try:
        asyncio.run(serve())
    except Exception as exc:
        log.exception("the service failed")  # (the traceback, in the log file)
        print(f"{SERVICE} service failed: {exc}", file=sys.stderr, flush=True)
        return EXIT_FAILURE
    print(f"{SERVICE} service stopped", flush=True)
    return EXIT_OK
