"""Entry point: no command opens the desktop app; a command runs headless."""

from __future__ import annotations

import sys

from app.cli import build_parser, run
from app.services.logs import setup_logging
from app.services.paths import resolve_paths


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    paths = resolve_paths(args.config)
    if args.command is None or args.command == "demo":
        setup_logging(paths.app_log, args.verbose)
        from app.ui.application import run_app  # Qt loads only for the desktop app

        return run_app(paths, demo_workers=args.workers if args.command == "demo" else None)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
