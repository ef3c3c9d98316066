"""ComfyUI's command line as an install's own `main.py --help` describes it, and the checks
of a worker's extra arguments against it, before anything is launched.

ComfyUI parses its flags with argparse (abbreviations allowed) and exits 2 on the first bad one,
so a bad extra argument is found here instead of in a crash loop. Pure: the help text comes in.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

_FLAG = re.compile(r"^--?[A-Za-z0-9][\w-]*$")


class Arity(StrEnum):
    NONE = "none"  # --cpu
    ONE = "one"  # --port PORT
    OPTIONAL = "optional"  # --listen [IP]
    ANY = "any"  # --fast [FAST ...]
    SOME = "some"  # --extra-model-paths-config PATH [PATH ...]


@dataclass(frozen=True)
class CommandLine:
    """The flags one ComfyUI install accepts, how many values each takes, and which exclude
    each other."""

    arity: Mapping[str, Arity]
    exclusive: tuple[frozenset[str], ...] = ()

    def resolve(self, written: str) -> tuple[str | None, list[str]]:
        """The flag `written` means (exact, or an unambiguous prefix as argparse allows), or
        None and the candidates it could mean (several: ambiguous; none: unknown)."""
        if written in self.arity:
            return written, [written]
        matches = [flag for flag in self.arity if flag.startswith(written)]
        return (matches[0] if len(matches) == 1 else None), matches


def _bracketed(text: str) -> list[str]:
    """The top-level [...] items of a usage block."""
    items, depth, start = [], 0, 0
    for position, char in enumerate(text):
        if char == "[":
            depth += 1
            if depth == 1:
                start = position + 1
        elif char == "]":
            depth -= 1
            if depth == 0:
                items.append(text[start:position])
    return items


def _arity(rest: str) -> Arity:
    rest = rest.strip()
    if not rest:
        return Arity.NONE
    if rest.startswith("[") and "," in rest and "{" not in rest:
        return Arity.ONE  # a metavar that lists choices itself: --preview-method [none,auto]
    if rest.startswith("["):
        return Arity.ANY if rest.endswith("...]") else Arity.OPTIONAL
    return Arity.SOME if rest.endswith("...]") else Arity.ONE


def parse_help(text: str) -> CommandLine:
    """Read the usage block of `main.py --help` (argparse's format)."""
    usage = text.split("\n\n", 1)[0]
    if not usage.startswith("usage:"):
        raise ValueError("not argparse help: it does not start with 'usage:'")
    arity: dict[str, Arity] = {}
    exclusive = []
    for item in _bracketed(" ".join(usage.split())):
        members = [part.strip() for part in item.split(" | ")]
        flags = []
        for member in members:
            flag, _, rest = member.partition(" ")
            if _FLAG.match(flag):
                arity[flag] = _arity(rest)
                flags.append(flag)
        if len(flags) > 1:
            exclusive.append(frozenset(flags))
    if not arity:
        raise ValueError("no flags found in the usage")
    return CommandLine(arity, tuple(exclusive))


# Flags ComfyFleet sets itself, and why an extra argument must not: each one would undo a
# choice made in its own field (ComfyUI keeps the last value given).
OWN_FLAGS: Mapping[str, str] = {
    "--cuda-device": "the GPU is chosen in the GPU field (--gpu); this flag would replace "
    "CUDA_VISIBLE_DEVICES with an index",
    "--default-device": "the GPU is chosen in the GPU field (--gpu); this flag would rewrite "
    "CUDA_VISIBLE_DEVICES",
    "--port": "the port is set in the Port field (--port)",
    "--listen": "the listen address is set in its own field (--listen)",
}
GPU_PINNING = ("--cuda-device", "--default-device")
WORKER_OWN_FLAGS: Mapping[str, str] = {
    **OWN_FLAGS,
    "--user-directory": "ComfyFleet gives each worker its own user folder",
    "--temp-directory": "ComfyFleet gives each worker its own temp folder",
    "--database-url": "ComfyFleet gives each worker its own database",
}


@dataclass(frozen=True)
class Token:
    written: str  # as the user wrote it (`--lowvr`, `--port=1`)
    flag: str | None  # the flag it resolves to, None for a value
    values: tuple[str, ...] = ()


def _unknown(written: str, line: CommandLine | None, candidates: list[str]) -> str:
    if len(candidates) > 1:
        return f"{written} is ambiguous: it could be {', '.join(candidates)}"
    if line is None:
        return f"no flag {written}"
    close = difflib.get_close_matches(written, list(line.arity), n=1, cutoff=0.6)
    hint = f": did you mean {close[0]}?" if close else " (see main.py --help)"
    return f"no flag {written}{hint}"


def _takes(arity: Arity, following: Sequence[str]) -> int:
    """How many of the following tokens argparse would give the flag as values."""
    if arity is Arity.NONE:
        return 0
    values = 0
    for token in following:
        if token.startswith("-") and not _is_number(token):
            break
        values += 1
        if arity in (Arity.ONE, Arity.OPTIONAL):
            break
    return values


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def tokenize(
    args: Sequence[str], line: CommandLine | None, own: Iterable[str] = ()
) -> tuple[list[Token], list[str]]:
    """Split extra args into flags with their values; problems in plain words. Without a
    command line (no install here to ask) only the flags ComfyFleet sets are recognised."""
    known = line or CommandLine(dict.fromkeys(own, Arity.ONE))
    tokens: list[Token] = []
    problems: list[str] = []
    index = 0
    while index < len(args):
        written = args[index]
        index += 1
        if not written.startswith("-") or _is_number(written):
            if line is not None:  # (without one, it may be an unknown flag's value)
                problems.append(f"{written!r} belongs to no flag (ComfyUI: unrecognized arguments)")
            tokens.append(Token(written, None))
            continue
        name, equals, inline = written.partition("=")
        flag, candidates = known.resolve(name)
        if flag is None:
            if line is not None or len(candidates) > 1:
                problems.append(_unknown(name, line, candidates))
            tokens.append(Token(written, None))
            continue
        arity = known.arity[flag]
        if equals:
            tokens.append(Token(written, flag, (inline,)))
            continue
        count = _takes(arity, args[index:])
        if arity in (Arity.ONE, Arity.SOME) and count == 0:
            problems.append(f"{flag} needs a value")
        tokens.append(Token(written, flag, tuple(args[index : index + count])))
        index += count
    return tokens, problems


def check_extra_args(
    args: Sequence[str],
    line: CommandLine | None,
    own: Mapping[str, str] = OWN_FLAGS,
    given: Sequence[str] = (),
) -> list[str]:
    """Every reason ComfyUI would refuse `args` (or they would undo one of ComfyFleet's own
    settings); [] when they are fine. `given` are the flags ComfyFleet passes itself."""
    tokens, problems = tokenize(args, line, own)
    for token in tokens:
        if token.flag is not None and token.flag in own:
            problems.append(f"{token.flag}: {own[token.flag]}")
    if line is not None:
        present = {t.flag for t in tokens if t.flag} | set(given)
        for group in line.exclusive:
            clash = sorted(group & present)
            if len(clash) > 1:
                problems.append(f"{' and '.join(clash)} exclude each other: ComfyUI takes one")
    return problems


def without_gpu_pinning(args: Sequence[str], line: CommandLine | None) -> tuple[list[str], str]:
    """The args minus any flag that would undo the GPU pin, each with its value(s); and a note
    saying what was dropped ("" when nothing was)."""
    tokens, _ = tokenize(args, line, GPU_PINNING)
    kept: list[str] = []
    dropped: list[str] = []
    for token in tokens:
        words = [token.written] if "=" in token.written else [token.written, *token.values]
        (dropped if token.flag in GPU_PINNING else kept).extend(words)
    if not dropped:
        return kept, ""
    return kept, f"left out {' '.join(dropped)}: the GPU is chosen in the GPU field"


def instance_arg_problems(
    extra_args: Sequence[str], gpu: str | None, line: CommandLine | None, worker: bool
) -> list[str]:
    """What is wrong with an instance's extra args, given the flags ComfyFleet passes it."""
    own = WORKER_OWN_FLAGS if worker else OWN_FLAGS
    return check_extra_args(extra_args, line, own, ["--cpu"] if gpu == "cpu" else [])


def spelled_out(args: Sequence[str], line: CommandLine | None) -> list[str]:
    """The args with every abbreviated flag written in full (`--lowvr` → `--lowvram`), as this
    install resolves it: a newer ComfyUI with more flags finds the same meaning, never an
    ambiguity (0.38 made `--high`, `--list`, `--fa`, `--v` ambiguous). Unchanged without a
    command line to resolve them with."""
    if line is None:
        return list(args)
    tokens, _ = tokenize(args, line)
    words: list[str] = []
    for token in tokens:
        if token.flag is None:
            words.append(token.written)
        elif "=" in token.written:
            words.append(f"{token.flag}={token.values[0]}")
        else:
            words += [token.flag, *token.values]
    return words


def missing_flags(argv: Sequence[str], line: CommandLine | None) -> list[str]:
    """The flags in `argv` (what ComfyFleet passes) that this install does not have."""
    if line is None:
        return []
    return [word for word in argv if word.startswith("--") and word not in line.arity]
