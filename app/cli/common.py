"""What every command shares: exit codes, the usage error, loading the config."""

from __future__ import annotations

import sys
from pathlib import Path

from app import APP_ID
from app.core.config import FleetConfig
from app.core.errors import ComfyFleetError
from app.services.paths import AppPaths
from app.services.storage import ConfigStore

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # as a shell reports a command stopped by Ctrl-C


class UsageError(ComfyFleetError):
    """Bad command-line input; exits with status 2."""


def load_config(paths: AppPaths) -> tuple[ConfigStore, FleetConfig]:
    store = ConfigStore(paths.config_file)
    result = store.load()
    if result.problem:
        print(f"{APP_ID}: warning: {result.problem}", file=sys.stderr)
    return store, result.config


def read_text_file(path: Path, what: str) -> str:
    """A UTF-8 text file, or a one-line reason it cannot be read."""
    try:
        return path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ComfyFleetError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ComfyFleetError(
            f"{path} is not a UTF-8 text file (byte {exc.start}): is it really {what}?"
        ) from None
