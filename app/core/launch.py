"""Launching ComfyUI instances, as pure decisions: where ComfyUI is, which Python, the exact
command line and environment, what a crash means, and when to retry."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import PurePath

from app.core.codec import json_object
from app.core.comfy_args import CommandLine, spelled_out, without_gpu_pinning
from app.core.config import (
    DEFAULT_MASTER_PORT,
    FIRST_WORKER_PORT,
    LOOPBACK,
    FleetConfig,
    MasterConfig,
    WorkerConfig,
    WorkerKind,
)
from app.core.names import file_stem

Exists = Callable[[PurePath], bool]


@dataclass(frozen=True)
class Found:
    path: PurePath
    reason: str  # said to the user: why this one was picked


DESKTOP_PORT = 8000  # where ComfyUI Desktop serves its own ComfyUI by default
DESKTOP_APP = "ComfyUI Desktop's install"


def comfyui_candidates(
    configured: str | None, env_path: str | None, home: PurePath
) -> list[tuple[PurePath, str]]:
    """The folders ComfyUI may be in, most specific first, with why each is looked at."""
    candidates: list[tuple[PurePath, str]] = []
    if configured:
        candidates.append((PurePath(configured), "the configured folder"))
    if env_path:
        candidates.append((PurePath(env_path), "COMFYUI_PATH"))
    for relative, why in (
        ("ComfyUI", "a ComfyUI folder in your home"),
        ("ComfyUI_windows_portable/ComfyUI", "the portable Windows build"),
        ("Documents/ComfyUI", "ComfyUI Desktop's folder"),
        ("AppData/Local/Programs/@comfyorgcomfyui-electron/resources/ComfyUI", DESKTOP_APP),
        ("AppData/Local/Programs/comfyui-electron/resources/ComfyUI", DESKTOP_APP),
    ):
        candidates.append((home / relative, why))
    candidates.append(
        (PurePath("/Applications/ComfyUI.app/Contents/Resources/ComfyUI"), DESKTOP_APP)
    )
    return candidates


def find_comfyui(
    configured: str | None, env_path: str | None, home: PurePath, exists: Exists
) -> Found | None:
    """The configured folder, else $COMFYUI_PATH, else the usual places; main.py must be there."""
    for folder, why in comfyui_candidates(configured, env_path, home):
        if exists(folder / "main.py"):
            return Found(folder, why)
    return None


def choose_python(install: PurePath, configured: str | None, current: str, exists: Exists) -> Found:
    """Configured, else the install's own environment, else the Python running ComfyFleet."""
    if configured:
        return Found(PurePath(configured), "the configured Python")
    for relative, why in (
        ("venv/bin/python", "the install's venv"),
        (".venv/bin/python", "the install's .venv"),
        ("venv/Scripts/python.exe", "the install's venv"),
        (".venv/Scripts/python.exe", "the install's .venv"),
        ("../python_embeded/python.exe", "the portable build's embedded Python"),
        ("python_embeded/python.exe", "the portable build's embedded Python"),
    ):
        if exists(install / relative):
            return Found(install / relative, why)
    return Found(PurePath(current), "the Python running ComfyFleet (no venv found in the install)")


@dataclass(frozen=True)
class GpuInfo:
    index: int
    uuid: str
    name: str


def propose_fleet(config: FleetConfig, gpus: Sequence[GpuInfo]) -> FleetConfig:
    """First launch: the master on the first GPU, one local worker per other GPU from 8189,
    as ComfyUI-Distributed does; without an NVIDIA GPU, a CPU master."""
    if not gpus:
        return replace(config, master=replace(config.master, gpu="cpu"), workers=())
    workers = tuple(
        WorkerConfig(
            f"gpu{gpu.index}", WorkerKind.LOCAL, port=FIRST_WORKER_PORT + number, gpu=gpu.uuid
        )
        for number, gpu in enumerate(gpus[1:])
    )
    return replace(config, master=replace(config.master, gpu=gpus[0].uuid), workers=workers)


def desktop_config_files(
    home: PurePath, appdata: str | None, xdg_config: str | None
) -> tuple[PurePath, ...]:
    """Where ComfyUI Desktop keeps its config.json (Electron's userData folder, named ComfyUI):
    %APPDATA% on Windows, Application Support on macOS, $XDG_CONFIG_HOME or ~/.config on Linux."""
    folders = [home / "Library/Application Support", PurePath(xdg_config or home / ".config")]
    if appdata:
        folders.insert(0, PurePath(appdata))
    return tuple(folder / "ComfyUI" / "config.json" for folder in folders)


def desktop_base_path(config_text: str) -> str | None:
    """The `basePath` of ComfyUI Desktop's config.json: its models, user files and .venv."""
    data = json_object(config_text)
    base = data.get("basePath") if data else None
    return base if isinstance(base, str) and base else None


@dataclass(frozen=True)
class InstallChoice:
    """A ComfyUI the first-run setup offers. ComfyUI Desktop's runs from its app's resources
    with the Python of its base path's .venv, and its own server answers on `desktop_port`."""

    folder: PurePath
    python: Found
    reason: str
    desktop_port: int | None = None

    @property
    def python_to_keep(self) -> str | None:
        """The Python to write into the config: only one that the launch would not find."""
        return str(self.python.path) if self.desktop_port is not None else None


def install_choices(
    configured: str | None,
    env_path: str | None,
    home: PurePath,
    exists: Exists,
    current_python: str,
    desktop_base: str | None = None,
) -> list[InstallChoice]:
    """Every ComfyUI found on this machine, the configured one first."""
    choices: list[InstallChoice] = []
    for folder, why in comfyui_candidates(configured, env_path, home):
        if any(c.folder == folder for c in choices) or not exists(folder / "main.py"):
            continue
        python = choose_python(folder, None, current_python, exists)
        if why != DESKTOP_APP:
            choices.append(InstallChoice(folder, python, why))
            continue
        if desktop_base:  # Desktop's Python is in its base path, not beside its ComfyUI
            venv = choose_python(PurePath(desktop_base), None, current_python, exists).path
            if venv != PurePath(current_python):
                python = Found(venv, "ComfyUI Desktop's .venv in its base path")
        choices.append(InstallChoice(folder, python, why, DESKTOP_PORT))
    return choices


def propose_setup(
    config: FleetConfig, choice: InstallChoice | None, gpus: Sequence[GpuInfo], connect: bool
) -> FleetConfig:
    """The first-run plan: the master launched from `choice` (or, with `connect`, the ComfyUI
    already serving there: ComfyUI Desktop's on its port 8000) on the first GPU, one local
    worker per other GPU pinned by UUID; remote and cloud workers are kept."""
    plan = propose_fleet(config, gpus)
    master = plan.master
    if choice is not None:
        master = replace(master, python=choice.python_to_keep)
    if connect:
        port = choice.desktop_port if choice and choice.desktop_port else master.port
        master = replace(master, comfyui_dir=None, host=LOOPBACK, port=port)
    elif choice is not None:
        port = master.port if master.port != choice.desktop_port else DEFAULT_MASTER_PORT
        master = replace(master, comfyui_dir=str(choice.folder), port=port)
    kept = tuple(w for w in config.workers if w.kind is not WorkerKind.LOCAL)
    return replace(plan, master=master, workers=plan.workers + kept)


@dataclass(frozen=True)
class LaunchSpec:
    name: str
    argv: tuple[str, ...]
    env: dict[str, str]  # only what ComfyFleet sets; the rest is inherited
    cwd: str
    port: int
    gpu: str | None
    listen: str
    folders: tuple[str, ...] = ()  # made before the launch: ComfyUI refuses a missing one
    note: str = ""  # what was changed from the configured extra args, and why


def build_launch(
    name: str,
    install: PurePath,
    python: PurePath,
    port: int,
    gpu: str | None,
    listen: str | None,
    extra_args: Sequence[str],
    worker_dir: PurePath | None,
    resolve_gpu: Callable[[str], str] | None = None,
    line: CommandLine | None = None,
) -> LaunchSpec:
    """`PYTHON main.py --port P --enable-cors-header --disable-auto-launch --listen A EXTRA…`.

    Workers get their own user, temp, output and database (never a shared SQLite file, nor one
    output folder: ComfyUI names a saved image from the folder's files, so two instances saving
    at once write the same name and one image replaces the other); input stays shared.
    Never --cuda-device or --default-device (with their values, however written): they would
    replace CUDA_VISIBLE_DEVICES.
    """
    address = listen or LOOPBACK
    argv = [
        str(python),
        "main.py",
        "--port",
        str(port),
        "--enable-cors-header",
        "--disable-auto-launch",
        "--listen",
        address,
    ]
    env = {"PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True"}
    if gpu == "cpu":
        argv.append("--cpu")
    elif gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = resolve_gpu(gpu) if resolve_gpu else gpu
        env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
    folders: tuple[str, ...] = ()
    if worker_dir is not None:
        env["COMFYUI_IS_WORKER"] = "1"
        folders = (str(worker_dir / "user"), str(worker_dir / "tmp"), str(worker_dir / "output"))
        argv += [
            "--user-directory",
            str(worker_dir / "user"),
            "--temp-directory",
            str(worker_dir / "tmp"),
            "--output-directory",
            str(worker_dir / "output"),
            "--database-url",
            f"sqlite:///{worker_dir / 'user' / 'comfyui.db'}",
        ]
    kept, note = without_gpu_pinning(extra_args, line)
    argv += spelled_out(kept, line)
    return LaunchSpec(name, tuple(argv), env, str(install), port, gpu, address, folders, note)


def launch_for(
    config: FleetConfig,
    name: str,
    install: PurePath,
    python: PurePath,
    workers_root: PurePath,
    line: CommandLine | None = None,
) -> LaunchSpec:
    if name == "master":
        master: MasterConfig = config.master
        return build_launch(
            "master",
            install,
            python,
            master.port,
            master.gpu,
            master.listen,
            master.extra_args,
            None,
            line=line,
        )
    worker = config.worker(name)
    if worker is None or worker.kind is not WorkerKind.LOCAL:
        raise ValueError(f"{name} is not a local worker")
    return build_launch(
        worker.name,
        install,
        python,
        worker.port,
        worker.gpu,
        worker.listen,
        worker.extra_args,
        workers_root / file_stem(worker.name),
        line=line,
    )


class CrashCause(StrEnum):
    BAD_ARGUMENT = "bad launch argument"  # argparse refused the command line: never retried
    CUDA_OOM = "CUDA out of memory"
    PORT_IN_USE = "port already in use"
    DATABASE = "its asset database cannot be used"  # 0.38: ASSETS_STARTUP_FAILED: <kind>
    MISSING_MODULE = "missing Python module"
    CUSTOM_NODE = "a custom node failed to import"
    CUDA_DRIVER = "CUDA/driver error"
    SIGNAL = "killed by signal"
    UNKNOWN = "unknown"


_PATTERNS: tuple[tuple[CrashCause, re.Pattern[str]], ...] = (
    (CrashCause.CUDA_OOM, re.compile(r"CUDA out of memory|OutOfMemoryError", re.I)),
    (
        CrashCause.PORT_IN_USE,
        re.compile(
            r"address already in use|Errno 98|WinError 10048|"
            r"only one usage of each socket address|is already in use on address",
            re.I,
        ),
    ),
    (CrashCause.MISSING_MODULE, re.compile(r"ModuleNotFoundError: No module named '([^']+)'")),
    (CrashCause.CUSTOM_NODE, re.compile(r"IMPORT FAILED|Cannot import .* module for custom nodes")),
    (
        CrashCause.CUDA_DRIVER,
        re.compile(
            r"CUDA error|CUDA driver|no CUDA-capable device|"
            r"NVIDIA driver|cudaGetDeviceCount|Found no NVIDIA",
            re.I,
        ),
    ),
)


@dataclass(frozen=True)
class Crash:
    cause: CrashCause
    exit_code: int | None
    detail: str
    last_lines: tuple[str, ...]

    @property
    def retryable(self) -> bool:
        """Retrying a command line ComfyUI refused gives the same refusal; so does a database
        that is not merely held by another program for now."""
        if self.cause is CrashCause.DATABASE:
            return self.detail.startswith(("in_use", "locked"))
        return self.cause is not CrashCause.BAD_ARGUMENT

    @property
    def summary(self) -> str:
        if self.cause is CrashCause.BAD_ARGUMENT:
            return f"{self.cause.value}: {self.detail}"
        code = "" if self.exit_code is None else f" (exit code {self.exit_code})"
        return (
            f"{self.cause.value}{code}: {self.detail}"
            if self.detail
            else f"{self.cause.value}{code}"
        )


ASSETS_FAILED = "ASSETS_STARTUP_FAILED: "  # 0.38, then what it says, line by line


def _database_crash(exit_code: int | None, tail: tuple[str, ...]) -> Crash | None:
    """0.38's start-up stop for its asset database: the sentence after the marker, which says
    what to do (another ComfyUI holds it, it is corrupt …)."""
    for number, line in enumerate(tail):
        if ASSETS_FAILED in line:
            kind = line.split(ASSETS_FAILED, 1)[1].strip()
            said = next((t.strip() for t in tail[number + 1 :] if t.strip()), "")
            return Crash(CrashCause.DATABASE, exit_code, f"{kind}: {said}"[:300], tail)
    return None


ARGPARSE_EXIT = 2
_ARGPARSE_ERROR = re.compile(r"^\S+: error: (.+)$")


def classify_crash(exit_code: int | None, last_lines: Sequence[str]) -> Crash:
    """Why an instance died, from its exit code and its last log lines (newest last)."""
    tail = tuple(last_lines[-40:])
    if exit_code == ARGPARSE_EXIT:  # argparse: usage, then "main.py: error: <reason>" last
        for line in reversed(tail):
            refused = _ARGPARSE_ERROR.match(line.strip())
            if refused:
                return Crash(CrashCause.BAD_ARGUMENT, exit_code, refused[1][:300], tail)
    database = _database_crash(exit_code, tail)
    if database is not None:
        return database
    for line in reversed(tail):
        for cause, pattern in _PATTERNS:
            match = pattern.search(line)
            if match:
                detail = match.group(1) if cause is CrashCause.MISSING_MODULE else line.strip()
                return Crash(cause, exit_code, detail[:200], tail)
    if exit_code is not None and (exit_code < 0 or exit_code > 128):
        number = -exit_code if exit_code < 0 else exit_code - 128
        return Crash(CrashCause.SIGNAL, exit_code, f"signal {number}", tail)
    return Crash(CrashCause.UNKNOWN, exit_code, tail[-1].strip()[:200] if tail else "", tail)


@dataclass(frozen=True)
class RestartPolicy:
    first_delay_s: float = 1.0
    max_delay_s: float = 60.0
    loop_exits: int = 5
    loop_window_s: float = 600.0

    def delay(self, consecutive_failures: int) -> float:
        """1 s, 2 s, 4 s … up to 60 s."""
        return float(
            min(self.max_delay_s, self.first_delay_s * 2 ** max(0, consecutive_failures - 1))
        )

    def is_crash_loop(self, exit_times: Sequence[float], now: float) -> bool:
        recent = [t for t in exit_times if now - t <= self.loop_window_s]
        return len(recent) >= self.loop_exits
