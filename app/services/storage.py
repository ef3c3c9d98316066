"""Config on disk: atomic writes, and unreadable files moved aside, never overwritten."""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.core.codec import TooDeep, from_data, parse_json, to_data, unknown_keys, with_unknown
from app.core.config import SCHEMA_VERSION, FleetConfig, validate_config
from app.core.errors import ConfigError, ConfigFileError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadResult:
    config: FleetConfig
    problem: str | None = None  # set when the file was unusable and defaults were used
    backup: Path | None = None


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write via a temp file in the same folder, fsync, then os.replace: never half a file under
    the final name (a full disk leaves only the temp file, and removes that)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def unwritable(folder: Path) -> str:
    """Why images cannot be saved into `folder` ("" if they can): it is a file, or it cannot be
    made, or written into (tried for real: permissions, a read-only or full disk)."""
    if folder.exists() and not folder.is_dir():
        return "that is a file, not a folder"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        return f"cannot write into it ({exc.strerror or exc})"
    return ""


def parse_config(text: str) -> FleetConfig:
    return _parse(text)[0]


def _parse(text: str) -> tuple[FleetConfig, dict[str, Any]]:
    """The config, and what the file holds that this version does not know (kept on save)."""
    try:
        data = parse_json(text)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"
        raise ConfigError("config", f"not valid JSON ({where})") from None
    except TooDeep as exc:
        raise ConfigError("config", str(exc)) from None
    if not isinstance(data, dict):
        raise ConfigError("config", "expected a JSON object")
    version = data.get("schema_version", SCHEMA_VERSION)
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise ConfigError(
            "schema_version", f"{version!r} is newer than this ComfyFleet understands"
        )
    config = from_data(FleetConfig, data)
    validate_config(config)
    return config, unknown_keys(FleetConfig, data)


def dump_config(config: FleetConfig, unknown: dict[str, Any] | None = None) -> str:
    return json.dumps(with_unknown(to_data(config), unknown or {}), indent=2) + "\n"


class ConfigStore:
    """Loads and saves one config file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._unknown: dict[str, Any] = {}  # keys of a newer version, written back on save

    def load(self) -> LoadResult:
        if self.path.is_dir():
            raise ConfigFileError(f"{self.path} is a folder, not a config file: pass a file path")
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return LoadResult(FleetConfig())
        except OSError as exc:
            raise ConfigFileError(f"Cannot read {self.path}: {exc.strerror}") from exc
        try:
            config, self._unknown = _parse(raw.decode("utf-8"))
        except (ConfigError, UnicodeDecodeError) as exc:
            backup = self._move_aside()
            problem = (
                f"{self.path} could not be used ({exc}). It was moved to {backup}; "
                "ComfyFleet started with default settings."
            )
            log.info("%s", problem)  # said by the caller: the window's banner, the CLI's warning
            return LoadResult(FleetConfig(), problem, backup)
        if self._unknown:
            log.info(
                "%s has settings of a newer version (kept): %s", self.path, list(self._unknown)
            )
        return LoadResult(config)

    def save(self, config: FleetConfig) -> None:
        validate_config(config)
        try:
            atomic_write_text(self.path, dump_config(config, self._unknown))
        except OSError as exc:
            raise ConfigFileError(f"Cannot write {self.path}: {exc.strerror}") from exc

    def _move_aside(self) -> Path:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        backup = self.path.with_name(f"{self.path.name}.invalid-{stamp}")
        counter = 1
        while backup.exists():
            backup = self.path.with_name(f"{self.path.name}.invalid-{stamp}-{counter}")
            counter += 1
        os.replace(self.path, backup)
        return backup
