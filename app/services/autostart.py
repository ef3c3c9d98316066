"""Start ComfyFleet at login: XDG autostart, the Windows Run key, a macOS LaunchAgent."""

from __future__ import annotations

import contextlib
import os
import plistlib
import sys
from collections.abc import Sequence
from pathlib import Path

from app import APP_ID, APP_NAME

RUN_KEY = r"Software\Microsoft\Windows\CurrentVersion\Run"
LAUNCH_AGENT_LABEL = "org.comfyfleet.comfy-fleet"


def launch_command() -> list[str]:
    """How to start this ComfyFleet: the bundle's own binary, else this Python with -m app."""
    if getattr(sys, "frozen", False):
        return [sys.executable]
    return [sys.executable, "-m", "app"]


class Autostart:
    """One place that knows where each desktop keeps its start-at-login entries."""

    def __init__(
        self,
        platform: str = sys.platform,
        home: Path | None = None,
        command: Sequence[str] | None = None,
    ) -> None:
        self.platform = platform
        self.home = home or Path.home()
        self.command = list(command or launch_command())

    @property
    def location(self) -> str:
        if self.platform == "win32":
            return f"HKCU\\{RUN_KEY}\\{APP_NAME}"
        return str(self._file())

    def _file(self) -> Path:
        if self.platform == "darwin":
            return self.home / "Library" / "LaunchAgents" / f"{LAUNCH_AGENT_LABEL}.plist"
        config = os.environ.get("XDG_CONFIG_HOME") or str(self.home / ".config")
        return Path(config) / "autostart" / f"{APP_ID}.desktop"

    def enabled(self) -> bool:
        if self.platform == "win32":
            return self._read_run_key() is not None
        return self._file().exists()

    def set(self, enabled: bool) -> None:
        if self.platform == "win32":
            self._write_run_key(enabled)
            return
        path = self._file()
        if not enabled:
            path.unlink(missing_ok=True)
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        if self.platform == "darwin":
            plist = {
                "Label": LAUNCH_AGENT_LABEL,
                "ProgramArguments": self.command,
                "RunAtLoad": True,
            }
            path.write_bytes(plistlib.dumps(plist))
        else:
            path.write_text(self.desktop_entry(), encoding="utf-8")

    def desktop_entry(self) -> str:
        exec_line = " ".join(_desktop_quote(arg) for arg in self.command)
        return (
            "[Desktop Entry]\n"
            "Type=Application\n"
            f"Name={APP_NAME}\n"
            "Comment=Run ComfyUI on many GPUs\n"
            f"Exec={exec_line}\n"
            f"Icon={APP_ID}\n"
            f"StartupWMClass={APP_ID}\n"
            "Terminal=false\n"
            "X-GNOME-Autostart-enabled=true\n"
        )

    def _read_run_key(self) -> str | None:
        if sys.platform != "win32":
            raise OSError("the Run key exists on Windows only")
        import winreg

        try:
            with winreg.OpenKey(winreg.HKEY_CURRENT_USER, RUN_KEY) as key:
                return str(winreg.QueryValueEx(key, APP_NAME)[0])
        except OSError:
            return None

    def _write_run_key(self, enabled: bool) -> None:
        if sys.platform != "win32":
            raise OSError("the Run key exists on Windows only")
        import winreg

        with winreg.CreateKey(winreg.HKEY_CURRENT_USER, RUN_KEY) as key:
            if enabled:
                value = " ".join(f'"{arg}"' for arg in self.command)
                winreg.SetValueEx(key, APP_NAME, 0, winreg.REG_SZ, value)
            else:
                with contextlib.suppress(FileNotFoundError):
                    winreg.DeleteValue(key, APP_NAME)


def _desktop_quote(arg: str) -> str:
    """The Desktop Entry spec's quoting for Exec (no shell is involved)."""
    if not any(ch in arg for ch in " \t\n\"'\\><~|&;$*?#()`"):
        return arg
    escaped = arg.replace("\\", "\\\\").replace('"', '\\"').replace("`", "\\`").replace("$", "\\$")
    return f'"{escaped}"'
