"""The ComfyUI install on this machine: where it is, which Python runs it, and the command
line it accepts (asked from its own `main.py --help`, which answers before importing torch)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path, PurePath

from app.core.comfy_args import CommandLine, instance_arg_problems, parse_help
from app.core.config import FleetConfig, WorkerKind
from app.core.errors import ConfigError
from app.core.launch import (
    Found,
    InstallChoice,
    choose_python,
    desktop_base_path,
    desktop_config_files,
    find_comfyui,
    install_choices,
)
from app.services.processes import cannot_run

log = logging.getLogger(__name__)
HELP_TIMEOUT_S = 20.0
# What decides the command line: ComfyUI's own parser and its entry point.
PARSER_FILES = ("main.py", "comfy/cli_args.py")


def _exists(path: PurePath) -> bool:
    return Path(path).is_file()


@dataclass(frozen=True)
class Install:
    folder: Path
    python: Path
    notes: tuple[str, ...] = ()  # what was picked, and why


def find_install(config: FleetConfig) -> Install | None:
    """The configured ComfyUI, else $COMFYUI_PATH, else the usual places; None if none."""
    found: Found | None = find_comfyui(
        config.master.comfyui_dir, os.environ.get("COMFYUI_PATH"), PurePath(Path.home()), _exists
    )
    if found is None:
        return None
    python = choose_python(found.path, config.master.python, sys.executable, _exists)
    notes = (f"ComfyUI: {found.path} ({found.reason})", f"Python: {python.path} ({python.reason})")
    return Install(Path(found.path), Path(python.path), notes)


def find_install_choices(config: FleetConfig) -> list[InstallChoice]:
    """Every ComfyUI on this machine, for the first-run setup (ComfyUI Desktop's included)."""
    return install_choices(
        config.master.comfyui_dir,
        os.environ.get("COMFYUI_PATH"),
        PurePath(Path.home()),
        _exists,
        sys.executable,
        _desktop_base(),
    )


def _desktop_base() -> str | None:
    files = desktop_config_files(
        PurePath(Path.home()), os.environ.get("APPDATA"), os.environ.get("XDG_CONFIG_HOME")
    )
    for path in files:
        try:
            base = desktop_base_path(Path(path).read_text(encoding="utf-8", errors="replace"))
        except OSError:
            continue
        if base:
            return base
    return None


@dataclass
class HelpReader:
    """`main.py --help` of an install, read once per version of its parser files."""

    timeout_s: float = HELP_TIMEOUT_S
    _cache: dict[tuple[object, ...], CommandLine | None] = field(default_factory=dict)
    problem: str = ""  # why the last read found no command line

    def read(self, install: Install) -> CommandLine | None:
        key = (install.folder, install.python, *(_stamp(install.folder / f) for f in PARSER_FILES))
        if key not in self._cache:
            self._cache[key] = self._ask(install)
        return self._cache[key]

    def _ask(self, install: Install) -> CommandLine | None:
        try:
            done = subprocess.run(
                [str(install.python), "main.py", "--help"],
                cwd=install.folder,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                errors="replace",
                timeout=self.timeout_s,
            )
            if done.returncode != 0:
                raise ValueError(f"it exited with {done.returncode}: {done.stderr[-300:]}")
            self.problem = ""
            return parse_help(done.stdout)
        except OSError as exc:
            self.problem = cannot_run(str(install.python), exc, str(install.folder))
        except (subprocess.TimeoutExpired, ValueError) as exc:
            self.problem = f"cannot read {install.folder / 'main.py'} --help: {exc}"
        log.warning("%s", self.problem)
        return None


def _stamp(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def check_instance_args(config: FleetConfig, name: str, reader: HelpReader) -> None:
    """Refuse extra args that ComfyUI would refuse (or that undo a field of ComfyFleet's),
    naming the likely intended flag; asks the install's own --help where there is one."""
    if name == "master":
        extra, gpu, worker = config.master.extra_args, config.master.gpu, False
    else:
        found = config.worker(name)
        if found is None or found.kind is not WorkerKind.LOCAL:
            return
        extra, gpu, worker = found.extra_args, found.gpu, True
    if not extra:
        return
    install = find_install(config)
    line = reader.read(install) if install is not None else None
    problems = instance_arg_problems(extra, gpu, line, worker)
    if problems:
        raise ConfigError("extra-args", "; ".join(problems))
