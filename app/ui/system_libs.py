"""Before the window opens on Linux: the system libraries Qt's X11 (xcb) platform needs, so
that a missing one is named with its package instead of Qt's "could not load the Qt platform
plugin xcb" abort."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

# What PySide6's xcb plugin and Qt libraries link to, beyond a minimal Debian/Ubuntu with
# Python, and the package that brings each (read with ldd and dpkg -S; see the README).
DEBIAN_PACKAGES = {
    "libEGL.so.1": "libegl1",
    "libGL.so.1": "libgl1",
    "libGLX.so.0": "libglx0",
    "libGLdispatch.so.0": "libglvnd0",
    "libfontconfig.so.1": "libfontconfig1",
    "libfreetype.so.6": "libfreetype6",
    "libdbus-1.so.3": "libdbus-1-3",
    "libglib-2.0.so.0": "libglib2.0-0",
    "libgthread-2.0.so.0": "libglib2.0-0",
    "libX11.so.6": "libx11-6",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libxcb.so.1": "libxcb1",
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-render.so.0": "libxcb-render0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb-util.so.1": "libxcb-util1",
    "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
}


def xcb_plugin() -> Path | None:
    """Qt's X11 plugin, found without importing Qt (whose own import needs some of these)."""
    spec = importlib.util.find_spec("PySide6")
    if spec is None or not spec.submodule_search_locations:
        return None
    package = Path(next(iter(spec.submodule_search_locations)))
    plugin = package / "Qt" / "plugins" / "platforms" / "libqxcb.so"
    return plugin if plugin.is_file() else None


def missing_libraries(library: Path) -> list[str]:
    """The libraries `library` needs that this system lacks, by ldd ([] if ldd is absent)."""
    ldd = shutil.which("ldd")
    if ldd is None:
        return []
    try:
        done = subprocess.run([ldd, str(library)], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return []
    found = [line.split()[0] for line in done.stdout.splitlines() if "not found" in line]
    return list(dict.fromkeys(found))


def uses_xcb() -> bool:
    platform = os.environ.get("QT_QPA_PLATFORM", "")
    wayland = os.environ.get("WAYLAND_DISPLAY") and not platform
    return sys.platform.startswith("linux") and (
        platform.startswith("xcb") or not (platform or wayland)
    )


def explain_missing() -> str | None:
    """Why the window cannot open, in words (what to install); None when nothing lacks."""
    if not uses_xcb():
        return None
    if not os.environ.get("DISPLAY"):
        return (
            "ComfyFleet's window needs a desktop session, and none is here (DISPLAY is not "
            "set). The command line works without one: comfy-fleet --help."
        )
    plugin = xcb_plugin()
    missing = missing_libraries(plugin) if plugin else []
    if not missing:
        return None
    packages = sorted({DEBIAN_PACKAGES.get(name, name) for name in missing})
    return (
        "ComfyFleet's window cannot open: these system libraries are missing: "
        f"{', '.join(missing)}.\nOn Debian/Ubuntu install them with:\n"
        f"    sudo apt install {' '.join(packages)}\n"
        "(The command line works without them: comfy-fleet --help.)"
    )
