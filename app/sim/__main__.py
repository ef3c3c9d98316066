"""`python -m app.sim [ComfyUI's flags]`: start one simulated ComfyUI instance.

Its command line is read first, as ComfyUI reads its own before importing anything heavy, so a
bad launch or `--help` answers at once.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from app.sim.settings import load_settings

ROOT_ENV = "COMFYFLEET_SIM_ROOT"


@contextlib.contextmanager
def _install(given: str | Path | None) -> Iterator[Path]:
    """Where this instance's main.py lives: given (a simulated install), $COMFYFLEET_SIM_ROOT,
    or else a folder of its own for this run, so instances never share files."""
    named = Path(given) if given else None
    if named is None and os.environ.get(ROOT_ENV):
        named = Path(os.environ[ROOT_ENV])
    if named is not None:
        yield named.absolute()
        return
    with tempfile.TemporaryDirectory(prefix="comfyfleet-sim-") as folder:
        yield Path(folder)


def main(argv: list[str] | None = None, install_dir: str | Path | None = None) -> int:
    with _install(install_dir) as install:
        try:
            settings = load_settings(list(sys.argv[1:] if argv is None else argv), install)
        except ValueError as exc:  # a bad simulation knob (faults), not a ComfyUI flag
            print(f"simulated ComfyUI: {exc}", file=sys.stderr)
            return 2
        import asyncio

        from app.sim.instance import serve
        from app.sim.simlog import SimLog

        try:
            return asyncio.run(serve(settings, SimLog()))
        except KeyboardInterrupt:
            return 0


if __name__ == "__main__":
    sys.exit(main())
