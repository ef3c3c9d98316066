"""The service files: a systemd unit systemd itself accepts (systemd-analyze verify, where it
is installed), quoting that no word can escape, a LaunchAgent and a Task Scheduler task."""

from __future__ import annotations

import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from app.core.service_files import (
    credential_problem,
    launch_agent,
    systemd_unit,
    windows_task,
)

COMMAND = [sys.executable, "-m", "app", "--config", "/home/ana/my 100% fleet.json"]


def test_the_unit_quotes_every_word_and_names_only_credential_files(tmp_path: Path) -> None:
    unit = systemd_unit(COMMAND, {"RUNPOD_API_KEY": "/etc/comfy-fleet/runpod.key"})
    exec_start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    assert exec_start.endswith('--config "/home/ana/my 100%% fleet.json" service run')
    assert "LoadCredential=RUNPOD_API_KEY:/etc/comfy-fleet/runpod.key" in unit.splitlines()
    assert "$$HOME" in systemd_unit(["/opt/$HOME/comfy-fleet"])  # no variable expanded
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed: the unit's syntax was not checked")
    assert verify(tmp_path / "comfy-fleet.service", unit) == ""
    broken = unit.replace("Type=notify", "Type=notify\nWatchdogSecs=60")  # the check can fail
    assert "Unknown key 'WatchdogSecs'" in verify(tmp_path / "broken.service", broken)


def verify(path: Path, unit: str) -> str:
    """What systemd says against the unit ("" when nothing), as the system manager reads it."""
    path.write_text(unit)
    check = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True)
    if "Failed to initialize manager" in check.stderr:
        pytest.skip(f"systemd-analyze cannot run here: {check.stderr.strip()}")
    return check.stderr.strip() if check.returncode or check.stderr.strip() else ""


def test_credential_names_and_files_are_checked() -> None:
    assert credential_problem("RUNPOD_API_KEY", "/etc/key") is None
    assert "letters, digits" in (credential_problem("a b", "/etc/key") or "")
    assert "absolute" in (credential_problem("KEY", "key.txt") or "")
    assert "line break" in (credential_problem("KEY", "/etc/a\nExecStart=/bin/sh") or "")


def test_the_launch_agent_and_the_windows_task() -> None:
    agent = launch_agent(COMMAND, "/Users/ana/Library/Logs/comfy-fleet/service.log")
    assert agent["ProgramArguments"] == [*COMMAND, "service", "run"]
    assert agent["KeepAlive"] == {"SuccessfulExit": False} and agent["RunAtLoad"] is True
    task = ET.fromstring(windows_task([r"C:\Program Files\ComfyFleet\comfy-fleet.exe"]))
    space = {"t": "http://schemas.microsoft.com/windows/2004/02/mit/task"}
    command = task.find("t:Actions/t:Exec/t:Command", space)
    arguments = task.find("t:Actions/t:Exec/t:Arguments", space)
    assert command is not None and command.text == r"C:\Program Files\ComfyFleet\comfy-fleet.exe"
    assert arguments is not None and arguments.text == "service run"
    assert task.find("t:Triggers/t:LogonTrigger", space) is not None
