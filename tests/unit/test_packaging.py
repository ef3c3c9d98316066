"""The desktop entry, icon set and bundle spec agree with the app."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from app import APP_ID, APP_NAME
from app.services.autostart import Autostart

ROOT = Path(__file__).resolve().parents[2]
DESKTOP = ROOT / "packaging" / "linux" / "comfy-fleet.desktop"


def entry(text: str) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(text)
    return parser["Desktop Entry"]


def test_desktop_entry_matches_the_app() -> None:
    desktop = entry(DESKTOP.read_text())
    assert desktop["StartupWMClass"] == APP_ID  # = QGuiApplication.setDesktopFileName
    assert desktop["Icon"] == APP_ID and desktop["Exec"] == APP_ID
    assert desktop["Name"] == APP_NAME and desktop["Type"] == "Application"
    autostart = entry(Autostart("linux", ROOT, ["/x/comfy-fleet"]).desktop_entry())
    assert autostart["StartupWMClass"] == APP_ID and autostart["Exec"] == "/x/comfy-fleet"


def test_desktop_entry_validates_where_the_validator_exists() -> None:
    validator = shutil.which("desktop-file-validate")
    if validator is None:
        pytest.skip("desktop-file-validate is not installed (Debian: desktop-file-utils)")
    check = subprocess.run([validator, str(DESKTOP)], capture_output=True, text=True)
    assert check.returncode == 0 and not check.stdout.strip(), check.stdout


def test_icon_set_has_every_size() -> None:
    for size in (16, 24, 32, 48, 64, 128, 256, 512):
        path = (
            ROOT / "resources" / "icons" / "hicolor" / f"{size}x{size}" / "apps" / f"{APP_ID}.png"
        )
        with Image.open(path) as image:
            assert image.size == (size, size) and image.mode == "RGBA"
    with Image.open(ROOT / "resources" / "icons" / f"{APP_ID}.ico") as ico:
        assert (256, 256) in ico.info["sizes"]
