"""Entry point: no command opens the desktop app; a command runs headless."""

from __future__ import annotations

import sys

from app.cli.main import parse_command_line, run
from app.services.logs import setup_logging
from app.services.paths import resolve_paths
from app.sim.fleet import SIM_COMMAND


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == [SIM_COMMAND]:  # the bundle runs the demo's simulated ComfyUI through itself
        from app.sim.__main__ import main as sim_main

        return sim_main(argv[1:])
    args = parse_command_line(argv)
    paths = resolve_paths(args.config)
    if args.command is None or args.command == "demo":
        setup_logging(paths.app_log, args.verbose)
        from app.ui.application import run_app  # Qt loads only for the desktop app

        return run_app(paths, demo_workers=args.workers if args.command == "demo" else None)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
