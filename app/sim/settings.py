"""What one simulated instance looks like: ComfyUI's own flags plus the simulation's knobs.

Precedence: `--sim-*` flags, then COMFYFLEET_SIM_* environment variables, then `sim.json`
in a simulated install, then the defaults here.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from app.sim import comfy_cli

GIB = 1024**3
DEFAULT_MODELS: dict[str, list[str]] = {
    "checkpoints": ["sd_xl_base_1.0.safetensors"],
    "loras": [],
    "vae": [],
    "upscale_models": ["tiny_compact_x2.safetensors"],
}
FAULT_NAMES = frozenset(
    {
        "start-fail",
        "crash-after",
        "die-after",
        "hang",
        "slow",
        "http500",
        "no-callback",
        "vram-full",
        "flaky",
    }
)
START_FAILURES = frozenset(
    {"cuda-oom", "module-missing", "custom-node", "cuda-driver", "port-in-use"}
)


@dataclass(frozen=True)
class Faults:
    start_fail: str | None = None
    crash_after: int | None = None
    die_after_s: float | None = None  # killed (SIGKILL) after this long up, as by the OOM killer
    hang: bool = False
    slow_s: float = 0.0
    http500: bool = False
    no_callback: bool = False
    vram_full: bool = False
    flaky: float = 0.0  # the share of HTTP requests that fail with a 500


def parse_faults(text: str) -> Faults:
    """`start-fail=cuda-oom,crash-after=3,hang,slow=2.0,http500,no-callback,vram-full,flaky=0.3`."""
    values: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, value = item.partition("=")
        if name not in FAULT_NAMES:
            raise ValueError(f"unknown fault {name!r}; known: {', '.join(sorted(FAULT_NAMES))}")
        values[name] = value
    start_fail = values.get("start-fail")
    if start_fail is not None and start_fail not in START_FAILURES:
        raise ValueError(f"start-fail={start_fail!r}; known: {', '.join(sorted(START_FAILURES))}")
    return Faults(
        start_fail=start_fail,
        crash_after=int(values["crash-after"]) if "crash-after" in values else None,
        die_after_s=float(values["die-after"]) if "die-after" in values else None,
        hang="hang" in values,
        slow_s=float(values["slow"] or 1.0) if "slow" in values else 0.0,
        http500="http500" in values,
        no_callback="no-callback" in values,
        vram_full="vram-full" in values,
        flaky=float(values["flaky"] or 0.3) if "flaky" in values else 0.0,
    )


@dataclass(frozen=True)
class SimSettings:
    port: int = 8188
    listen: str = "127.0.0.1"
    cors: bool = False
    cpu: bool = False
    base_dir: Path = field(default_factory=Path.cwd)
    output_dir: Path | None = None
    temp_dir: Path | None = None
    input_dir: Path | None = None
    user_dir: Path | None = None
    database_url: str | None = None
    comfyui_version: str = comfy_cli.DEFAULT_VERSION  # whose command line and answers
    assets: bool = False  # 0.38's asset system (on unless --disable-assets)
    argv: tuple[str, ...] = ()
    name: str = ""
    device_name: str = "NVIDIA GeForce RTX 4090"
    vram_total: int = 24 * GIB
    gpus: int = 1  # visible when CUDA_VISIBLE_DEVICES does not say (0.38 lists them all)
    time_scale: float = 1.0
    startup_s: float = 0.2
    models: dict[str, list[str]] = field(default_factory=lambda: dict(DEFAULT_MODELS))
    distributed: bool = True
    faults: Faults = field(default_factory=Faults)

    @property
    def output(self) -> Path:
        return self.output_dir or self.base_dir / "output"

    @property
    def temp(self) -> Path:
        # ComfyUI appends temp/ to --temp-directory
        return (self.temp_dir or self.base_dir) / "temp"

    @property
    def input(self) -> Path:
        return self.input_dir or self.base_dir / "input"

    @property
    def user(self) -> Path:
        return self.user_dir or self.base_dir / "user"

    @property
    def distributed_config(self) -> Path:
        """In the extension's own folder, as ComfyUI-Distributed keeps it: custom_nodes/ of
        the install, or of --base-directory."""
        return self.base_dir / "custom_nodes" / "ComfyUI-Distributed" / "gpu_config.json"


def sim_parser() -> argparse.ArgumentParser:
    """The simulation's own knobs; everything else goes to ComfyUI's recorded parser."""
    parser = argparse.ArgumentParser(prog="main.py", add_help=False, allow_abbrev=False)
    parser.add_argument("--sim-name")
    parser.add_argument("--sim-device")
    parser.add_argument("--sim-vram-gb", type=float)
    parser.add_argument("--sim-time-scale", type=float)
    parser.add_argument("--sim-startup-s", type=float)
    parser.add_argument("--sim-faults")
    parser.add_argument("--sim-no-distributed", action="store_true")
    parser.add_argument("--sim-comfyui-version", choices=sorted(comfy_cli.PARSERS))
    return parser


def load_settings(argv: list[str], install_dir: Path) -> SimSettings:
    """ComfyUI's flags as the real parser takes them (bad ones exit 2 with its usage and
    reason), the simulation's `--sim-*` knobs beside them. `install_dir` is where main.py is."""
    knobs, comfy_argv = sim_parser().parse_known_args(argv)
    env = os.environ
    version = str(
        knobs.sim_comfyui_version
        or env.get("COMFYFLEET_SIM_COMFYUI_VERSION")
        or _sim_json(install_dir, None).get("comfyui_version")
        or comfy_cli.DEFAULT_VERSION
    )
    if version not in comfy_cli.PARSERS:
        sim_parser().error(
            f"the simulated ComfyUI is {' or '.join(comfy_cli.PARSERS)}, not {version}"
        )
    args = comfy_cli.parse(comfy_argv, version)
    file_values = _sim_json(install_dir, args.port)

    def pick(flag: object, env_name: str, key: str, default: object) -> object:
        if flag is not None:
            return flag
        if env_name in env:
            return env[env_name]
        return file_values.get(key, default)

    listen = str(args.listen).split(",")[0]
    base_dir = Path(args.base_directory).absolute() if args.base_directory else install_dir

    def folder(value: str | None) -> Path | None:
        return Path(value).absolute() if value else None

    return SimSettings(
        port=args.port,
        listen="127.0.0.1" if listen in ("", "localhost") else listen,
        cors=args.enable_cors_header is not None,
        cpu=args.cpu,
        base_dir=base_dir,
        output_dir=folder(args.output_directory),
        temp_dir=folder(args.temp_directory),
        input_dir=folder(args.input_directory),
        user_dir=folder(args.user_directory),
        database_url=args.database_url,
        comfyui_version=version,
        assets=version == "0.38" and not args.disable_assets,
        argv=("main.py", *argv),
        name=str(pick(knobs.sim_name, "COMFYFLEET_SIM_NAME", "name", f"127.0.0.1:{args.port}")),
        device_name=str(
            pick(knobs.sim_device, "COMFYFLEET_SIM_DEVICE", "device", SimSettings.device_name)
        ),
        vram_total=int(
            float(str(pick(knobs.sim_vram_gb, "COMFYFLEET_SIM_VRAM_GB", "vram_gb", 24))) * GIB
        ),
        gpus=int(str(pick(None, "COMFYFLEET_SIM_GPUS", "gpus", 1))),
        time_scale=float(
            str(pick(knobs.sim_time_scale, "COMFYFLEET_SIM_TIME_SCALE", "time_scale", 1.0))
        ),
        startup_s=float(
            str(pick(knobs.sim_startup_s, "COMFYFLEET_SIM_STARTUP_S", "startup_s", 0.2))
        ),
        models=_models(env.get("COMFYFLEET_SIM_MODELS"), file_values.get("models")),
        distributed=not (
            knobs.sim_no_distributed
            or env.get("COMFYFLEET_SIM_NO_DISTRIBUTED")
            or file_values.get("distributed") is False
        ),
        faults=parse_faults(str(pick(knobs.sim_faults, "COMFYFLEET_SIM_FAULTS", "faults", ""))),
    )


def _sim_json(base_dir: Path, port: int | None) -> dict[str, object]:
    """A simulated install's settings; `by_port` holds those of the instance on one port
    (instances of one install differ only by their command line, so the port tells them)."""
    path = base_dir / "sim.json"
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        return {}
    own = (data.get("by_port") or {}).get(str(port), {})
    return {**data, **own} if isinstance(own, dict) else data


def _models(env_text: str | None, file_value: object) -> dict[str, list[str]]:
    models = {k: list(v) for k, v in DEFAULT_MODELS.items()}
    source = json.loads(env_text) if env_text else file_value
    if isinstance(source, dict):
        models.update({str(k): [str(f) for f in v] for k, v in source.items()})
    return models
