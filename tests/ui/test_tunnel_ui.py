"""One click: a tunnel from the window and the tray, through a stand-in cloudflared."""

from __future__ import annotations

import hashlib
import json
import platform
from collections.abc import Callable
from pathlib import Path

import pytest
from PySide6.QtGui import QAction, QGuiApplication
from PySide6.QtWidgets import QApplication, QMessageBox, QSystemTrayIcon

from app.core.config import FleetConfig, MasterConfig, TunnelSettings
from app.core.tunnel import PINNED_SHA256, PINNED_VERSION, release_asset
from app.services.processes import ProcessId
from app.services.secrets import SecretStore
from app.services.storage import ConfigStore
from app.sim.fleet import SimInstance, http_json
from app.ui.named_tunnel_dialog import NamedTunnelDialog
from tests.fakes import cloudflared_script, install_cloudflared
from tests.fakes.memory_keyring import MemoryKeyring
from tests.local_server import local_server
from tests.ui.helpers import answer, desktop_with
from tests.waiting import until


@pytest.mark.asyncio
async def test_tunnel_button_copies_the_url_and_quit_restores_the_host(
    qapp: QApplication,
    sim_factory: Callable[..., SimInstance],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(QSystemTrayIcon, "isSystemTrayAvailable", staticmethod(lambda: True))
    master = sim_factory("master")
    binary = install_cloudflared(tmp_path)
    config = FleetConfig(
        master=MasterConfig(port=master.port),
        tunnel=TunnelSettings(cloudflared_path=str(binary)),
    )
    app = desktop_with(qapp, tmp_path, config)
    notes: list[str] = []
    app.window.noticeRaised.connect(lambda notice, title, text: notes.append(title))
    QGuiApplication.clipboard().setText("")
    await app.start()
    try:
        action = app.window.findChild(QAction, "tunnel")
        assert action is not None
        action.trigger()
        asked = [await answer(QMessageBox.StandardButton.Yes)]  # the exposure question
        await until(lambda: QGuiApplication.clipboard().text().endswith(".trycloudflare.com"))
        url = QGuiApplication.clipboard().text()
        # the URL is announced as soon as /ready answers; the master's host follows
        await until(lambda: app.tunnels.master.status.master_note.startswith("master host set"))
        assert asked and "no login" in asked[0] and notes == ["Tunnel ready"]
        assert http_json(f"{master.url}/distributed/config")["master"]["host"] == url.removeprefix(
            "https://"
        )
        assert url in app.window.tunnel_label.text()
        assert not ConfigStore(app.paths.config_file).load().config.tunnel.confirm_exposure
        assert app.tray is not None
        app.tray.menu.aboutToShow.emit()
        labels = [a.text() for a in app.tray.menu.actions()]
        assert "Stop tunnel" in labels and "Copy tunnel URL" in labels
        status = app.tunnels.master.status
    finally:
        app.quit()
        await app.stop()
        app.instance.close()
        if app.tray:
            app.tray.hide()
        app.window.close()
    assert http_json(f"{master.url}/distributed/config")["master"]["host"] == ""
    assert status.pid is not None and status.create_time is not None
    assert ProcessId(status.pid, status.create_time).alive() is None


@pytest.mark.asyncio
async def test_named_tunnel_from_the_window(
    qapp: QApplication,
    sim_factory: Callable[..., SimInstance],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    master = sim_factory("master")
    binary = install_cloudflared(tmp_path)
    record = tmp_path / "argv.json"
    monkeypatch.setenv("STANDIN_RECORD", str(record))
    config = FleetConfig(
        master=MasterConfig(port=master.port),
        tunnel=TunnelSettings(cloudflared_path=str(binary), confirm_exposure=False),
    )
    app = desktop_with(qapp, tmp_path, config)
    app.tunnels.secrets = SecretStore(backend=MemoryKeyring())
    token = "eyJ0b2tlbiI6ICJ3aW5kb3cifQ"
    await app.start()
    try:
        menu = app.window.tunnel_menu
        menu.refill()
        labels = [a.text() for a in menu.actions() if not a.isSeparator()]
        assert labels[0].startswith("Quick tunnel") and labels[-1] == "Add named tunnel…"
        dialog = NamedTunnelDialog(app.keeper.config, app.tunnels.secrets)
        dialog.name.setText("studio")
        dialog.hostname.setText("comfy.example.com")
        dialog.save()
        assert dialog.error.text().startswith("A named tunnel needs")  # no token yet
        dialog.token.setText(token)
        dialog.save()
        assert dialog.result_config is not None and app.keeper.apply(dialog.result_config)
        saved = app.paths.config_file.read_text()
        assert "comfy.example.com" in saved and token not in saved
        menu.refill()
        studio = next(a for a in menu.actions() if a.text().startswith("studio"))
        studio.trigger()
        await until(lambda: app.tunnels.master.status.url == "https://comfy.example.com")
        await until(lambda: app.tunnels.master.status.master_note.startswith("master host set"))
        recorded = json.loads(record.read_text())
        assert recorded["token_in_env"] and token not in " ".join(recorded["argv"])
        menu.refill()
        assert not any(a.isEnabled() for a in menu.actions()[:2])  # one tunnel at a time
    finally:
        app.quit()
        await app.stop()
        app.instance.close()
        app.window.close()
    assert token not in app.tunnels.master.log_file.read_text()
    assert http_json(f"{master.url}/distributed/config")["master"]["host"] == ""


@pytest.mark.asyncio
async def test_missing_cloudflared_is_offered_and_verified(
    qapp: QApplication,
    sim_factory: Callable[..., SimInstance],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from aiohttp import web

    master = sim_factory("master")
    payload = cloudflared_script().encode()
    served: list[str] = []

    async def serve(request: web.Request) -> web.Response:
        served.append(request.path)
        return web.Response(body=payload)

    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))  # no cloudflared anywhere
    asset = release_asset(platform.system(), platform.machine()).name
    monkeypatch.setitem(PINNED_SHA256, asset, hashlib.sha256(payload).hexdigest())
    async with local_server("/{version}/{asset}", serve) as base:
        config = FleetConfig(
            master=MasterConfig(port=master.port),
            tunnel=TunnelSettings(confirm_exposure=False, download_base_url=base),
        )
        app = desktop_with(qapp, tmp_path, config)
        await app.start()
        try:
            app.tunnels.toggle()
            asked = [await answer(QMessageBox.StandardButton.Yes)]  # download cloudflared?
            await until(lambda: app.tunnels.master.status.state.value == "ready")
            assert "cloudflared is not installed" in asked[0] and "SHA-256" in asked[0]
            assert served == [f"/{PINNED_VERSION}/{asset}"]
            assert (app.paths.data_dir / "bin" / "cloudflared").stat().st_mode & 0o111
        finally:
            app.quit()
            await app.stop()
            app.instance.close()
            app.window.close()


@pytest.mark.asyncio
async def test_the_tunnel_menu_tunnels_a_local_worker_and_takes_an_existing_cloudflared(
    qapp: QApplication, sim_factory: Callable[..., SimInstance], tmp_path: Path
) -> None:
    from app.core.config import WorkerConfig, WorkerKind

    master = sim_factory("master")
    worker = sim_factory("w1")
    binary = install_cloudflared(tmp_path)
    config = FleetConfig(
        master=MasterConfig(port=master.port),
        workers=(WorkerConfig("w1", WorkerKind.LOCAL, port=worker.port),),
        tunnel=TunnelSettings(confirm_exposure=False),
    )
    app = desktop_with(qapp, tmp_path, config)
    await app.start()
    try:
        assert app.tunnels.use_cloudflared(binary)  # what Browse… saves
        assert app.keeper.config.tunnel.cloudflared_path == str(binary)
        menu = app.window.tunnel_menu
        menu.refill()
        labels = [a.text() for a in menu.actions() if not a.isSeparator()]
        assert "Use an existing cloudflared…" in labels
        workers = next(a.menu() for a in menu.actions() if a.text() == "Tunnel a local worker")
        (w1,) = workers.actions()
        assert w1.text() == "w1"
        w1.trigger()
        runner = app.tunnels.runner("w1")
        await until(lambda: runner.status.state.value == "ready")
        assert runner.status.target == "w1" and runner.status.url
        assert http_json(f"{master.url}/distributed/config")["master"]["host"] == ""  # untouched
        menu.refill()
        workers = next(a.menu() for a in menu.actions() if a.text() == "Tunnel a local worker")
        assert workers.actions()[0].text() == "Stop the tunnel for w1"
    finally:
        await app.stop()
        app.instance.close()
        app.window.close()
