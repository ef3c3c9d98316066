"""Starting the app on a config, and reading the fleet table the way a person reads it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtWidgets import QApplication

from app.core.config import FleetConfig
from app.services.paths import resolve_paths
from app.services.storage import ConfigStore
from app.ui.application import DesktopApp
from app.ui.worker_table import Column


def cell(app: DesktopApp, name: str, column: Column) -> str:
    model = app.window.model
    number = next(i for i, r in enumerate(model.rows()) if r.name == name)
    return str(model.data(model.index(number, column)))


def desktop_with(
    qapp: QApplication, folder: Path, config: FleetConfig, **options: Any
) -> DesktopApp:
    """The app on `config`, saved to `folder` and loaded as a user's file is (`options` go to
    DesktopApp)."""
    paths = resolve_paths(folder / "fleet.json")
    ConfigStore(paths.config_file).save(config)
    return DesktopApp(qapp, paths, ConfigStore(paths.config_file).load(), **options)
