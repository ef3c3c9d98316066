"""The files that make `comfy-fleet service run` a background service: a systemd user unit
(Type=notify: it says when it is ready and pings the watchdog; its output goes to the journal),
a macOS LaunchAgent and a Windows Task Scheduler task. Secrets are never in them: a unit only
names the files systemd hands over (LoadCredential=), read from $CREDENTIALS_DIRECTORY."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Mapping, Sequence
from xml.sax.saxutils import escape

SERVICE = "comfy-fleet"
AGENT_LABEL = "org.comfyfleet.service"
RUN = ("service", "run")
WATCHDOG_S = 60  # systemd restarts it when no ping came for this long
_CREDENTIAL_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def credential_problem(name: str, path: str) -> str | None:
    """Why a `--credential NAME=FILE` cannot go into a unit (None: it can)."""
    if not _CREDENTIAL_NAME.match(name):
        return f"{name!r}: a credential name is letters, digits, '_', '.' or '-'"
    if not path.startswith("/"):
        return f"{path!r}: the credential's file must be an absolute path"
    if any(ch in path for ch in "\n\r\0"):
        return "the credential's file name has a line break in it"
    return None


def systemd_unit(command: Sequence[str], credentials: Mapping[str, str] | None = None) -> str:
    """`command`: how to start ComfyFleet (its binary, or Python with -m app); `credentials`:
    credential name → the file systemd reads it from."""
    loads = "".join(
        f"LoadCredential={name}:{_unit_word(path, quote=False)}\n"
        for name, path in (credentials or {}).items()
    )
    exec_start = " ".join(_unit_word(word) for word in (*command, *RUN))
    return (
        "[Unit]\n"
        "Description=ComfyFleet: the fleet queue and the cloud guards, without a window\n"
        "Wants=network-online.target\n"
        "After=network-online.target\n"
        "\n"
        "[Service]\n"
        "Type=notify\n"
        f"ExecStart={exec_start}\n"
        f"WatchdogSec={WATCHDOG_S}\n"
        "Restart=on-failure\n"
        "RestartSec=5\n"
        "TimeoutStopSec=60\n"
        f"{loads}"
        "\n"
        "[Install]\n"
        "WantedBy=default.target\n"
    )


def _unit_word(word: str, quote: bool = True) -> str:
    """systemd's quoting: % and $ doubled (specifiers, variables), quotes where it has spaces."""
    text = word.replace("%", "%%").replace("$", "$$")
    if not quote or not any(ch in text for ch in " \t\"'\\;"):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def launch_agent(command: Sequence[str], log_file: str) -> dict[str, object]:
    """The LaunchAgent's plist: started at login, restarted when it fails."""
    return {
        "Label": AGENT_LABEL,
        "ProgramArguments": [*command, *RUN],
        "RunAtLoad": True,
        "KeepAlive": {"SuccessfulExit": False},
        "StandardOutPath": log_file,
        "StandardErrorPath": log_file,
    }


def windows_task(command: Sequence[str]) -> str:
    """A Task Scheduler task (its XML, for `schtasks /Create /XML`): at logon, restarted on
    failure, no time limit."""
    words = [*command, *RUN]
    arguments = subprocess.list2cmdline(words[1:])  # (Windows' own quoting; no shell)
    return (
        '<?xml version="1.0" encoding="UTF-16"?>\n'
        '<Task version="1.2" xmlns="http://schemas.microsoft.com/windows/2004/02/mit/task">\n'
        "  <RegistrationInfo><Description>ComfyFleet: the fleet queue and the cloud guards"
        "</Description></RegistrationInfo>\n"
        "  <Triggers><LogonTrigger><Enabled>true</Enabled></LogonTrigger></Triggers>\n"
        "  <Settings>\n"
        "    <MultipleInstancesPolicy>IgnoreNew</MultipleInstancesPolicy>\n"
        "    <DisallowStartIfOnBatteries>false</DisallowStartIfOnBatteries>\n"
        "    <StopIfGoingOnBatteries>false</StopIfGoingOnBatteries>\n"
        "    <ExecutionTimeLimit>PT0S</ExecutionTimeLimit>\n"
        "    <RestartOnFailure><Interval>PT1M</Interval><Count>999</Count></RestartOnFailure>\n"
        "  </Settings>\n"
        "  <Actions>\n"
        f"    <Exec><Command>{escape(words[0])}</Command>"
        f"<Arguments>{escape(arguments)}</Arguments></Exec>\n"
        "  </Actions>\n"
        "</Task>\n"
    )
