"""The fleet's config as the window sees it: one owner that saves it and says when it changed."""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal

from app.core.config import FleetConfig
from app.core.errors import ComfyFleetError
from app.services.storage import ConfigStore


class ConfigKeeper(QObject):
    changed = Signal(object, object)  # (previous, new) FleetConfig, after a successful save
    failed = Signal(str)  # a save that did not happen, in words

    def __init__(self, store: ConfigStore, config: FleetConfig) -> None:
        super().__init__()
        self.store = store
        self._config = config

    @property
    def config(self) -> FleetConfig:
        return self._config

    def apply(self, config: FleetConfig) -> bool:
        """Save `config` (validated); False, with `failed` said, when it cannot be."""
        try:
            self.store.save(config)
        except ComfyFleetError as exc:
            self.failed.emit(str(exc))
            return False
        previous, self._config = self._config, config
        self.changed.emit(previous, config)
        return True
