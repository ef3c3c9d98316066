"""ComfyUI's command line, rebuilt from its recorded parser: 0.3.64's (`data/comfyui_cli_args.json`,
a copy of `recordings/cli/cli_args.json`) or 0.38's (`data/comfyui-0.38_cli_args.json`, a copy
of `recordings/comfyui-0.38/cli_args.json`). The same flags, types, nargs, choices, mutually
exclusive groups and abbreviations, and 0.38's checks after parsing (--verbose, --cache-ram) and
implied settings, so a launch the real program refuses is refused here with the same usage and
reason (exit 2, before anything starts).
"""

from __future__ import annotations

import argparse
import enum
import json
import os
from functools import cache
from pathlib import Path
from typing import Any

DATA_DIR = Path(__file__).with_name("data")
PARSERS = {
    "0.3.64": DATA_DIR / "comfyui_cli_args.json",
    "0.38": DATA_DIR / "comfyui-0.38_cli_args.json",
}
DEFAULT_VERSION = "0.3.64"
PROG = "main.py"  # what the real errors say: "main.py: error: …"
VERBOSE_LEVELS = ("DEBUG", "DETAIL", "INFO", "WARNING", "ERROR", "CRITICAL")  # 0.38's


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


class VerboseAction(argparse.Action):
    """0.38's --verbose (nargs='*', repeatable): each use's values kept, checked after parsing."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        getattr(namespace, self.dest).append(list(values or []))


ACTIONS: dict[str, Any] = {
    "_StoreAction": "store",
    "_StoreTrueAction": "store_true",
    "_AppendAction": "append",
    "EnumAction": "store",  # ComfyUI's EnumAction: a choice, stored as its enum later
    "VerboseAction": VerboseAction,
}
# Recorded defaults that name the recording machine's paths: the instance derives its own.
PATH_DEFAULTS = frozenset({"database_url"})


@cache
def recorded_parser(version: str = DEFAULT_VERSION) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(PARSERS[version].read_text(encoding="utf-8"))
    return data


def build_parser(version: str = DEFAULT_VERSION) -> argparse.ArgumentParser:
    recorded = recorded_parser(version)
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
    if action is VerboseAction:
        keywords["default"] = []
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


def parse(argv: list[str], version: str = DEFAULT_VERSION) -> argparse.Namespace:
    """As ComfyUI's `parser.parse_args()` (and, for 0.38, its checks and implied settings
    after it): on bad input, usage and reason on stderr, exit 2."""
    parser = build_parser(version)
    args = parser.parse_args(argv)
    if version == "0.38":
        _after_parsing_038(parser, args)
    return args


def _after_parsing_038(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """What 0.38's cli_args.py does once parse_args() returned (recordings/comfyui-0.38/
    cli_diff.md, "Implied settings")."""
    pairs = []
    for values in args.verbose:
        level = values[0] if values else "DEBUG"
        if len(values) > 2 or level not in VERBOSE_LEVELS:
            parser.error("--verbose expects no values, a console LEVEL, or LEVEL FILE")
        pairs.append((level, values[1] if len(values) == 2 else None))
    args.verbose = pairs
    if len(args.cache_ram) > 2:
        parser.error("--cache-ram accepts at most two values: active GB and inactive GB")
    args.cache_classic = args.cache_classic or args.high_ram
    args.offline = args.offline or args.disable_api_nodes
    args.disable_partner_nodes = args.disable_partner_nodes or args.offline
