"""Desktop integration settings: start at login, minimise to tray, notifications per event."""

from __future__ import annotations

import plistlib
import shutil
import subprocess
from pathlib import Path

import pytest
from PySide6.QtWidgets import QApplication, QPushButton, QSystemTrayIcon
from pytestqt.qtbot import QtBot

from app.core.config import AppSettings, Notice
from app.services.autostart import Autostart
from app.services.paths import AppPaths
from app.services.storage import ConfigStore
from app.ui.application import DesktopApp
from app.ui.settings_dialog import SettingsDialog


def test_xdg_autostart_entry_is_written_and_removed(tmp_path: Path) -> None:
    autostart = Autostart("linux", tmp_path, ["/opt/Comfy Fleet/comfy-fleet"])
    assert not autostart.enabled()
    autostart.set(True)
    entry = Path(autostart.location)
    assert entry.parent.name == "autostart" and entry.name == "comfy-fleet.desktop"
    text = entry.read_text()
    assert 'Exec="/opt/Comfy Fleet/comfy-fleet"' in text
    assert "StartupWMClass=comfy-fleet" in text
    if shutil.which("desktop-file-validate"):
        check = subprocess.run(
            ["desktop-file-validate", str(entry)], capture_output=True, text=True
        )
        assert check.returncode == 0 and not check.stdout, check.stdout
    autostart.set(False)
    assert not autostart.enabled() and not entry.exists()


def test_macos_launch_agent(tmp_path: Path) -> None:
    autostart = Autostart("darwin", tmp_path, ["/Applications/ComfyFleet.app/Contents/MacOS/x"])
    autostart.set(True)
    plist = plistlib.loads(Path(autostart.location).read_bytes())
    assert plist["RunAtLoad"] is True
    assert plist["ProgramArguments"] == ["/Applications/ComfyFleet.app/Contents/MacOS/x"]
    assert Path(autostart.location).parent == tmp_path / "Library" / "LaunchAgents"


def test_dialog_round_trip(qapp: QApplication) -> None:
    dialog = SettingsDialog(AppSettings(), "/somewhere", has_tray=False)
    assert not dialog.minimize_to_tray.isEnabled()
    dialog.start_at_login.setChecked(True)
    dialog.notices[Notice.RESTART].setChecked(False)
    settings = dialog.result_settings()
    assert settings.start_at_login and not settings.notify_restart
    assert settings.notify_crash and settings.minimize_to_tray  # kept for a desktop with a tray


@pytest.mark.asyncio
async def test_settings_apply_autostart_notifications_and_tray(
    qapp: QApplication,
    saved_paths: AppPaths,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    qtbot: QtBot,
) -> None:
    monkeypatch.setattr(QSystemTrayIcon, "isSystemTrayAvailable", staticmethod(lambda: True))
    autostart = Autostart("linux", tmp_path, ["comfy-fleet"])
    app = DesktopApp(
        qapp, saved_paths, ConfigStore(saved_paths.config_file).load(), autostart=autostart
    )
    shown: list[str] = []
    assert app.tray is not None
    monkeypatch.setattr(app.tray, "showMessage", lambda title, text: shown.append(title))
    try:
        settings = AppSettings(start_at_login=True, notify_crash=False, minimize_to_tray=False)
        assert app.apply_settings(settings)
        assert autostart.enabled()
        assert ConfigStore(saved_paths.config_file).load().config.app == settings
        app.notify(Notice.CRASH, "gpu1 crashed", "killed")
        app.notify(Notice.RUN_FINISHED, "Run finished", "3 images")
        assert shown == ["Run finished"]
        app.window.show()
        qtbot.waitExposed(app.window)
        app.window.close()  # with minimise-to-tray off, closing quits even with a tray
        assert app.quit_requested.is_set()
        assert app.apply_settings(AppSettings())
        assert not autostart.enabled()
    finally:
        await app.stop()
        app.instance.close()
        app.tray.hide()
        app.window.set_close_to_tray(False)
        app.window.close()


def test_the_theme_is_light_or_dark_as_chosen(qapp: QApplication) -> None:
    from PySide6.QtGui import QColor, QPalette

    from app.ui.theme import Theme

    before = qapp.palette()
    try:
        theme = Theme(qapp, "dark")
        assert qapp.palette().color(QPalette.ColorRole.Window) == QColor("#202124")
        theme.apply("light")
        assert qapp.palette().color(QPalette.ColorRole.Window).lightness() > 200
    finally:
        qapp.setPalette(before)


def test_settings_show_and_set_the_cloud_guards(qapp: QApplication) -> None:
    from app.core.cloud import CloudSettings

    asked: list[bool] = []
    cloud = CloudSettings(runpod_api_url="http://127.0.0.1:1", idle_stop_min=15)
    dialog = SettingsDialog(
        AppSettings(), "/somewhere", has_tray=False, cloud=cloud, on_key=lambda: asked.append(True)
    )
    assert dialog.idle_minutes.value() == 15 and dialog.daily_budget.text() == "no limit"
    dialog.idle_minutes.setValue(30)
    dialog.daily_budget.setValue(12.5)
    dialog.elastic.setChecked(True)
    dialog.elastic_max.setValue(3)
    result = dialog.result_cloud()
    assert (result.idle_stop_min, result.daily_budget_usd, result.elastic) == (30, 12.5, True)
    assert result.elastic_max_pods == 3 and result.runpod_api_url == "http://127.0.0.1:1"
    next(b for b in dialog.findChildren(QPushButton) if b.text() == "Runpod API key…").click()
    assert asked == [True]
