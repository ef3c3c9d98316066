"""Extra args checked against ComfyUI's own command line before anything is launched."""

from __future__ import annotations

import pytest

from app.core.comfy_args import (
    Arity,
    CommandLine,
    instance_arg_problems,
    missing_flags,
    parse_help,
    spelled_out,
    without_gpu_pinning,
)
from app.sim import comfy_cli  # ComfyUI 0.3.64's parser as recorded: its --help is the input


@pytest.fixture(scope="module")
def line() -> CommandLine:
    return parse_help(comfy_cli.build_parser().format_help())


def test_help_gives_every_flag_its_arity_and_the_exclusive_groups(line: CommandLine) -> None:
    recorded = comfy_cli.recorded_parser()
    assert set(line.arity) == {o["flags"][0] for o in recorded["options"]} | {"-h"}
    assert line.arity["--cpu"] is Arity.NONE and line.arity["--port"] is Arity.ONE
    assert line.arity["--listen"] is Arity.OPTIONAL and line.arity["--fast"] is Arity.ANY
    assert line.arity["--extra-model-paths-config"] is Arity.SOME
    assert set(line.exclusive) == {frozenset(g) for g in recorded["mutually_exclusive"]}


def test_not_help_is_refused() -> None:
    with pytest.raises(ValueError):
        parse_help("Traceback (most recent call last):\n")


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["--lowvarm"], "no flag --lowvarm: did you mean --lowvram?"),
        (["--fp16"], "--fp16 is ambiguous: it could be --fp16-unet, --fp16-vae, --fp16-text-enc"),
        (["--preview-method"], "--preview-method needs a value"),
        (["--lowvram", "1"], "'1' belongs to no flag (ComfyUI: unrecognized arguments)"),
        (["--cuda-device", "1"], "--cuda-device: the GPU is chosen in the GPU field"),
        (["--cuda-device=1"], "--cuda-device: the GPU is chosen in the GPU field"),
        (["--cuda-dev", "1"], "--cuda-device: the GPU is chosen in the GPU field"),
        (["--default-device", "1"], "--default-device: the GPU is chosen in the GPU field"),
        (["--port", "9000"], "--port: the port is set in the Port field"),
        (["--user-directory", "/x"], "--user-directory: ComfyFleet gives each worker its own"),
    ],
)
def test_problems_say_what_comfyui_would(line: CommandLine, args: list[str], problem: str) -> None:
    assert any(p.startswith(problem) for p in instance_arg_problems(args, "0", line, True))


def test_good_args_pass_abbreviations_and_negative_numbers_included(line: CommandLine) -> None:
    args = ["--lowvram", "--preview-method", "auto", "--fast", "--reserve-vram", "-1", "--verb"]
    assert instance_arg_problems(args, "GPU-a", line, True) == []
    assert instance_arg_problems(["--cpu-vae"], "cpu", line, True) == []


def test_flags_that_exclude_the_cpu_flag_comfyfleet_passes(line: CommandLine) -> None:
    assert instance_arg_problems(["--lowvram"], "cpu", line, True) == [
        "--cpu and --lowvram exclude each other: ComfyUI takes one"
    ]
    assert instance_arg_problems(["--lowvram"], "0", line, True) == []


def test_without_the_install_only_comfyfleets_own_flags_are_known() -> None:
    assert instance_arg_problems(["--lowvarm"], "0", None, True) == []
    assert instance_arg_problems(["--cuda-dev=1"], "0", None, True)[0].startswith("--cuda-device:")


@pytest.mark.parametrize(
    ("args", "kept", "note"),
    [
        (["--cuda-device", "1", "--lowvram"], ["--lowvram"], "left out --cuda-device 1"),
        (["--cuda-device=1"], [], "left out --cuda-device=1"),
        (["--cuda-dev", "3", "--fast"], ["--fast"], "left out --cuda-dev 3"),
        (["--lowvram"], ["--lowvram"], ""),
    ],
)
def test_gpu_pinning_flags_leave_whole(
    line: CommandLine, args: list[str], kept: list[str], note: str
) -> None:
    left, said = without_gpu_pinning(args, line)
    assert left == kept and said.startswith(note)
    assert without_gpu_pinning(args, None)[0] == kept


@pytest.fixture(scope="module")
def line_038() -> CommandLine:
    """0.38's `main.py --help` as recorded from its parser (recordings/comfyui-0.38/help.txt)."""
    from tests.conftest import RECORDINGS

    return parse_help((RECORDINGS / "comfyui-0.38" / "help.txt").read_text(encoding="utf-8"))


def test_abbreviations_are_passed_in_full(line: CommandLine, line_038: CommandLine) -> None:
    """Written out as the install resolves them, so a newer ComfyUI reads the same flags: 0.38
    made `--high` ambiguous (--highvram, --high-ram), which 0.3.64 read as --highvram."""
    args = ["--lowvr", "--preview-m", "auto", "--reserve-vram=2", "--fast", "x"]
    assert spelled_out(args, line) == [
        "--lowvram",
        "--preview-method",
        "auto",
        "--reserve-vram=2",
        "--fast",
        "x",
    ]
    assert spelled_out(["--high"], line) == ["--highvram"]
    assert "--high is ambiguous" in instance_arg_problems(["--high"], None, line_038, False)[0]
    assert spelled_out(["--lowvr"], None) == ["--lowvr"]  # nothing to resolve them with


def test_the_flags_comfyfleet_passes_are_checked_against_the_install(
    line: CommandLine, line_038: CommandLine
) -> None:
    from pathlib import PurePath

    from app.core.launch import build_launch

    spec = build_launch(
        "gpu1", PurePath("/c"), PurePath("/py"), 8189, "cpu", None, [], PurePath("/w"), line=line
    )
    assert missing_flags(spec.argv, line) == [] and missing_flags(spec.argv, line_038) == []
    older = CommandLine({f: a for f, a in line.arity.items() if f != "--database-url"})
    assert missing_flags(spec.argv, older) == ["--database-url"]
    assert missing_flags(spec.argv, None) == []
