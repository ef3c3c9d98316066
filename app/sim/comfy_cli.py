"""ComfyUI 0.3.64's command line, rebuilt from its recorded parser (`data/comfyui_cli_args.json`,
a copy of `recordings/cli/cli_args.json`): the same flags, types, nargs, choices, mutually
exclusive groups and abbreviations, so a launch the real program refuses is refused here with
the same usage and reason (exit 2, before anything starts).
"""

from __future__ import annotations

import argparse
import enum
import json
import os
from functools import cache
from pathlib import Path
from typing import Any

DATA = Path(__file__).with_name("data") / "comfyui_cli_args.json"
PROG = "main.py"  # what the real errors say: "main.py: error: …"


class PerformanceFeature(enum.Enum):
    """What `--fast` accepts (read from ComfyUI 0.3.64's comfy/cli_args.py)."""

    Fp16Accumulation = "fp16_accumulation"
    Fp8MatrixMultiplication = "fp8_matrix_mult"
    CublasOps = "cublas_ops"
    AutoTune = "autotune"


def is_valid_directory(path: str) -> str:
    """ComfyUI's check for --user-directory and --front-end-root, with its messages."""
    if not os.path.exists(path):
        raise argparse.ArgumentTypeError(f"The path '{path}' does not exist.")
    if not os.path.isdir(path):
        raise argparse.ArgumentTypeError(f"'{path}' is not a directory.")
    if not os.access(path, os.R_OK):
        raise argparse.ArgumentTypeError(f"You do not have read permissions for '{path}'.")
    return path


TYPES: dict[str, Any] = {
    "str": str,
    "int": int,
    "float": float,
    "is_valid_directory": is_valid_directory,
    "PerformanceFeature": PerformanceFeature,
}
ACTIONS = {
    "_StoreAction": "store",
    "_StoreTrueAction": "store_true",
    "_AppendAction": "append",
    "EnumAction": "store",  # ComfyUI's EnumAction: a choice, stored as its enum later
}
# Recorded defaults that name the recording machine's paths: the instance derives its own.
PATH_DEFAULTS = frozenset({"database_url"})


@cache
def recorded_parser() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DATA.read_text(encoding="utf-8"))
    return data


def build_parser() -> argparse.ArgumentParser:
    recorded = recorded_parser()
    parser = argparse.ArgumentParser(prog=PROG, allow_abbrev=bool(recorded["allow_abbrev"]))
    groups: dict[tuple[str, ...], Any] = {}
    group_of = {flag: tuple(g) for g in recorded["mutually_exclusive"] for flag in g}
    for option in recorded["options"]:
        members = group_of.get(option["flags"][0])
        target: Any = parser
        if members is not None:
            if members not in groups:
                groups[members] = parser.add_mutually_exclusive_group()
            target = groups[members]
        target.add_argument(*option["flags"], **_keywords(option))
    return parser


def _keywords(option: dict[str, Any]) -> dict[str, Any]:
    action = ACTIONS[option["action"]]
    keywords: dict[str, Any] = {"dest": option["dest"], "action": action}
    default = option["default"]
    if option["action"] == "EnumAction":
        default = option["choices"][0] if default is not None else None
    keywords["default"] = None if option["dest"] in PATH_DEFAULTS else default
    if action == "store_true":
        return keywords
    if option["nargs"] is not None:
        keywords["nargs"] = option["nargs"]
    if option["const"] is not None:
        keywords["const"] = option["const"]
    if option["type"] is not None:
        keywords["type"] = TYPES[option["type"]]
    if option["choices"] is not None:
        keywords["choices"] = option["choices"]
    if option["metavar"] is not None:
        keywords["metavar"] = option["metavar"]
    return keywords


def parse(argv: list[str]) -> argparse.Namespace:
    """As ComfyUI's `parser.parse_args()`: on bad input, usage and reason on stderr, exit 2."""
    return build_parser().parse_args(argv)
