"""First-run setup in the window: the installs and GPUs found, the proposed master plus one
worker per GPU pinned by UUID as an editable plan, ComfyUI Desktop's server on port 8000 as
the master when it answers; and the master's settings editable at any time (Enter on its row)."""

from __future__ import annotations

import dataclasses
from pathlib import Path, PurePath

import pytest
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QDialog
from pytestqt.qtbot import QtBot

from app.core.config import FleetConfig, MasterConfig, WorkerConfig, WorkerKind
from app.core.launch import DESKTOP_APP, DESKTOP_PORT, Found, InstallChoice
from app.services.gpus import GpuReading
from app.services.paths import AppPaths
from app.services.storage import ConfigStore
from app.ui.application import DesktopApp
from app.ui.setup_dialog import MasterDialog, SetupDialog
from tests.ui.helpers import select
from tests.waiting import until

GPUS = tuple(
    GpuReading(
        i,
        name,
        f"GPU-{i}ccc0000-1111",
        f"0000:0{i}:00.0",
        24 * 2**30,
        0,
        24 * 2**30,
        0,
        30,
        70,
        450,
    )
    for i, name in enumerate(("NVIDIA GeForce RTX 4090", "NVIDIA RTX A5000", "NVIDIA RTX 3090"))
)
LAN = WorkerConfig("lan-box", WorkerKind.REMOTE, host="127.0.0.20", port=8188)


def comfyui(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "main.py").write_text("# ComfyUI\n")
    return folder


def git_install(tmp_path: Path) -> InstallChoice:
    folder = comfyui(tmp_path / "ComfyUI")
    python = Found(PurePath(folder / "venv/bin/python"), "the install's venv")
    return InstallChoice(folder, python, "a ComfyUI folder in your home")


def desktop_install(tmp_path: Path) -> InstallChoice:
    folder = comfyui(tmp_path / "Programs/comfyui-electron/resources/ComfyUI")
    python = Found(PurePath(tmp_path / "base/.venv/bin/python"), "ComfyUI Desktop's .venv")
    return InstallChoice(folder, python, DESKTOP_APP, DESKTOP_PORT)


def test_the_plan_is_edited_then_applied(qapp: QApplication, tmp_path: Path) -> None:
    choice = git_install(tmp_path)
    dialog = SetupDialog(FleetConfig(workers=(LAN,)), GPUS, [choice])
    found = dialog.found.text()
    assert (
        str(choice.folder) in found
        and "GPU 2: NVIDIA RTX 3090 · 24 GiB · GPU-2ccc0000-1111" in found
    )
    assert dialog.form.launch.isChecked() and dialog.form.port.value() == 8188
    assert dialog.workers.rowCount() == 2  # the master has GPU 0; one worker per other GPU
    assert dialog.workers.item(0, 3).text() == "1: NVIDIA RTX A5000 · GPU-1ccc0000-1111"
    dialog.workers.item(0, 1).setText("a5000")
    dialog.workers.item(0, 2).setText("8300")
    dialog.workers.item(1, 0).setCheckState(Qt.CheckState.Unchecked)
    dialog.accept()
    assert dialog.result() == QDialog.DialogCode.Accepted, dialog.report.text()
    config = dialog.result_config
    assert config is not None
    assert config.master == MasterConfig(comfyui_dir=str(choice.folder), gpu="GPU-0ccc0000-1111")
    assert config.workers == (
        WorkerConfig("a5000", WorkerKind.LOCAL, port=8300, gpu="GPU-1ccc0000-1111"),
        LAN,  # remote and cloud workers are kept
    )


def test_a_bad_plan_is_refused_with_the_field_named(qapp: QApplication, tmp_path: Path) -> None:
    dialog = SetupDialog(FleetConfig(), GPUS, [git_install(tmp_path)])
    dialog.workers.item(0, 2).setText("eighty")
    dialog.accept()
    assert dialog.result_config is None
    assert dialog.report.text() == "✘ gpu1: port: 'eighty' is not a port"
    dialog.workers.item(0, 2).setText("8188")  # the master's port
    dialog.accept()
    assert dialog.result_config is None and "8188" in dialog.report.text()
    dialog.form.folder.setEditText(str(tmp_path / "nowhere"))
    dialog.workers.item(0, 2).setText("8189")
    dialog.accept()
    assert dialog.report.text() == f"✘ ComfyUI folder: {tmp_path / 'nowhere'} has no main.py"


def test_comfyui_desktop_answering_on_8000_becomes_the_master(
    qapp: QApplication, tmp_path: Path
) -> None:
    desktop, git = desktop_install(tmp_path), git_install(tmp_path)
    dialog = SetupDialog(FleetConfig(), GPUS, [desktop, git], answering=frozenset({DESKTOP_PORT}))
    assert dialog.form.running.isChecked() and dialog.form.port.value() == DESKTOP_PORT
    assert "port 8000 (something listens there now)" in dialog.note.text()
    dialog.accept()
    config = dialog.result_config
    assert config is not None and not config.master.launched_by_app
    assert config.master.url == "http://127.0.0.1:8000"
    again = SetupDialog(FleetConfig(), GPUS, [desktop, git], answering=frozenset({DESKTOP_PORT}))
    again.form.folder.setCurrentIndex(1)  # the git install: launched, on the usual port
    assert again.form.launch.isChecked() and again.form.port.value() == 8188
    assert again.note.text() == ""
    again.form.folder.setCurrentIndex(0)  # Desktop's again; launched by ComfyFleet it keeps
    again.form.launch.setChecked(True)  # off Desktop's port and runs Desktop's own Python
    again.form.port.setValue(8188)
    again.accept()
    launched = again.result_config
    assert launched is not None and launched.master.comfyui_dir == str(desktop.folder)
    assert launched.master.python == str(desktop.python.path)


def test_no_gpu_and_no_comfyui_say_so(qapp: QApplication) -> None:
    problem = "NVML cannot be read: libnvidia-ml.so.1 not found"
    dialog = SetupDialog(FleetConfig(), (), [], gpu_problem=problem)
    assert dialog.found.text() == (
        f"No ComfyUI found in the usual places: choose its folder below.\n{problem}"
    )
    assert dialog.note.text() == (
        "No NVIDIA GPU was found: the master runs on the CPU, with no workers."
    )
    assert dialog.workers.rowCount() == 0 and dialog.form.running.isChecked()
    dialog.form.launch.setChecked(True)
    dialog.accept()
    assert dialog.report.text() == "✘ ComfyUI folder: choose the folder ComfyUI runs from"
    dialog.form.running.setChecked(True)  # a ComfyUI already running somewhere is enough
    dialog.form.host.setText("127.0.0.30")
    dialog.accept()
    assert dialog.result_config is not None
    assert dialog.result_config.master.url == "http://127.0.0.30:8188"


def test_the_master_dialog_changes_where_the_master_runs(
    qapp: QApplication, tmp_path: Path
) -> None:
    choice = git_install(tmp_path)
    config = FleetConfig(
        master=MasterConfig(comfyui_dir=str(choice.folder), gpu="GPU-0ccc0000-1111")
    )
    dialog = MasterDialog(config, GPUS, [choice])
    form = dialog.form
    assert (
        form.folder.currentText() == str(choice.folder) and form.gpu.chosen() == "GPU-0ccc0000-1111"
    )
    assert not form.host.isEnabled()  # launched here, it is reached on loopback
    form.port.setValue(8288)
    form.listen.setText("0.0.0.0")
    form.extra_args.setText("--preview-method auto")
    dialog.accept()
    assert dialog.result_config is not None
    assert dialog.result_config.master == dataclasses.replace(
        config.master, port=8288, listen="0.0.0.0", extra_args=("--preview-method", "auto")
    )
    other = MasterDialog(config, GPUS, [choice])
    other.form.folder.setEditText(str(tmp_path))
    other.accept()
    assert other.result_config is None
    assert other.report.text() == f"✘ ComfyUI folder: {tmp_path} has no main.py"
    other.form.running.setChecked(True)
    assert other.form.host.isEnabled() and not other.form.folder.isEnabled()
    other.form.host.setText("127.0.0.40")
    other.accept()
    assert other.result_config is not None
    assert other.result_config.master.url == "http://127.0.0.40:8188"  # (its own port)


@pytest.mark.asyncio
async def test_enter_on_the_master_row_and_the_setup_action_apply_to_the_saved_config(
    qapp: QApplication,
    saved_paths: AppPaths,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    qtbot: QtBot,
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("COMFYUI_PATH", raising=False)
    home_comfyui = comfyui(tmp_path / "home/ComfyUI")
    app = DesktopApp(qapp, saved_paths, ConfigStore(saved_paths.config_file).load())
    window = app.window
    window.show()
    qtbot.waitExposed(window)

    def dialog_of(kind: type[QDialog]) -> QDialog | None:
        shown = [w for w in QApplication.topLevelWidgets() if isinstance(w, kind)]
        return next((w for w in shown if w.isVisible()), None)

    def saved() -> FleetConfig:
        return ConfigStore(saved_paths.config_file).load().config

    try:
        select(app, "master")
        QTest.keyClick(window.table, Qt.Key.Key_Return)
        await until(lambda: dialog_of(MasterDialog) is not None)
        master = dialog_of(MasterDialog)
        assert isinstance(master, MasterDialog)
        assert master.form.folder.findText(str(home_comfyui)) >= 0  # found in the home folder
        master.form.folder.setCurrentIndex(master.form.folder.findText(str(home_comfyui)))
        master.form.port.setValue(8288)
        master.buttons.button(master.buttons.StandardButton.Ok).click()
        await until(lambda: saved().master.port == 8288)
        assert saved().master.comfyui_dir == str(home_comfyui)

        window.own_actions["setup"].trigger()
        await until(lambda: dialog_of(SetupDialog) is not None)
        setup = dialog_of(SetupDialog)
        assert isinstance(setup, SetupDialog)
        assert str(home_comfyui) in setup.found.text()
        assert "Applying replaces the local workers gpu1." in setup.note.text()
        setup.apply_button.click()
        await until(lambda: dialog_of(SetupDialog) is None)
        kept = {"lan-box", "runpod"}  # the remote and cloud workers; gpu1 is replaced
        await until(lambda: {w.name for w in saved().workers} == kept)
    finally:
        await app.stop()
        app.instance.close()
        window.set_close_to_tray(False)
        window.close()
