"""A missing system library is named, with its package, before Qt would abort."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from app.ui import system_libs


def test_the_missing_libraries_are_named_with_their_packages(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(system_libs.sys, "platform", "linux")
    monkeypatch.setenv("QT_QPA_PLATFORM", "xcb")
    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.setattr(system_libs, "xcb_plugin", lambda: tmp_path / "libqxcb.so")
    missing = ["libxcb-cursor.so.0", "libxcb-icccm.so.4"]
    monkeypatch.setattr(system_libs, "missing_libraries", lambda library: missing)
    said = system_libs.explain_missing()
    assert said is not None and "libxcb-cursor.so.0, libxcb-icccm.so.4" in said
    assert "sudo apt install libxcb-cursor0 libxcb-icccm4" in said
    monkeypatch.setattr(system_libs, "missing_libraries", lambda library: [])
    assert system_libs.explain_missing() is None
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    assert system_libs.explain_missing() is None


def test_whatever_this_machines_plugin_lacks_is_named_with_its_package() -> None:
    """The tests need no system libraries (Qt runs offscreen), so this machine may lack some:
    each one the real plugin lacks has its package in the table."""
    plugin = system_libs.xcb_plugin()
    assert plugin is not None
    missing = system_libs.missing_libraries(plugin)
    assert all(library in system_libs.DEBIAN_PACKAGES for library in missing), missing


def test_no_display_is_said_not_aborted_on(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "QT_QPA_PLATFORM": "xcb", "HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "app", "--config", str(tmp_path / "f.json")],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 1
    assert "needs a desktop session" in done.stderr and "Aborted" not in done.stderr
