"""Run the real `comfy-fleet` entry point in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
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
