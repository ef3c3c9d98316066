"""Run the real `comfy-fleet` entry point in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path


def comfy_fleet(
    *args: str, config: Path | None = None, input_text: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "app"]
    if config is not None:
        command += ["--config", str(config)]
    return subprocess.run(
        [*command, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input_text,
        env=os.environ.copy(),
    )


def start_up(config: Path) -> subprocess.Popen[str]:
    """`comfy-fleet up` in the background; its output interleaved on stdout."""
    return subprocess.Popen(
        [sys.executable, "-m", "app", "--config", str(config), "up"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def read_until(process: subprocess.Popen[str], done: Callable[[list[str]], bool]) -> list[str]:
    """The process's lines until `done` says enough (it fails if the output ends first)."""
    assert process.stdout is not None
    seen: list[str] = []
    while not done(seen):
        line = process.stdout.readline()
        assert line, "".join(seen)
        seen.append(line)
    return seen
