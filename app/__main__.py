"""Entry point: no command opens the desktop app; a command runs headless."""

from __future__ import annotations

import sys
from pathlib import Path

from app.cli.main import parse_command_line, run
from app.services.logs import setup_logging
from app.services.paths import resolve_paths
from app.sim.fleet import SIM_COMMAND, SIM_RUNPOD_COMMAND, is_sim_install


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == [SIM_COMMAND]:  # the bundle runs the demo's simulated ComfyUI through itself
        from app.sim.__main__ import main as sim_main

        return sim_main(argv[1:])
    if argv[:1] == [SIM_RUNPOD_COMMAND]:  # and the demo's simulated Runpod
        from app.sim.runpod import main as runpod_main

        runpod_main(argv[1:])
        return 0
    if argv[:1] == ["main.py"] and is_sim_install(Path.cwd()):
        # the bundle has no Python: as "the Python" of the demo's simulated install, it runs
        # that install's main.py itself
        from app.sim.__main__ import main as sim_main

        return sim_main(argv[1:], install_dir=Path.cwd())
    args = parse_command_line(argv)
    paths = resolve_paths(args.config)
    if args.command is None or args.command == "demo":
        setup_logging(paths.app_log, args.verbose)
        from app.ui.application import run_app  # Qt loads only for the desktop app

        demo = args.workers if args.command == "demo" else None
        return run_app(paths, demo_workers=demo, queue_url=args.queue_url)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
