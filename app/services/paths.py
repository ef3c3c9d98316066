"""Where ComfyFleet keeps its files (platformdirs: config, data, logs, state)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from app import APP_ID

CONFIG_ENV = "COMFY_FLEET_CONFIG"
CONFIG_FILE = "fleet.json"


@dataclass(frozen=True)
class AppPaths:
    config_file: Path
    data_dir: Path
    log_dir: Path
    state_dir: Path

    @property
    def app_log(self) -> Path:
        return self.log_dir / "comfy-fleet.log"

    @property
    def window_state(self) -> Path:
        return self.state_dir / "window.ini"


def resolve_paths(config_override: str | os.PathLike[str] | None = None) -> AppPaths:
    """`--config` wins, then $COMFY_FLEET_CONFIG, then the platform's config folder."""
    chosen = config_override or os.environ.get(CONFIG_ENV)
    config_file = (
        Path(chosen).expanduser().absolute()
        if chosen
        else Path(platformdirs.user_config_dir(APP_ID, appauthor=False)) / CONFIG_FILE
    )
    return AppPaths(
        config_file=config_file,
        data_dir=Path(platformdirs.user_data_dir(APP_ID, appauthor=False)),
        log_dir=Path(platformdirs.user_log_dir(APP_ID, appauthor=False)),
        state_dir=Path(platformdirs.user_state_dir(APP_ID, appauthor=False)),
    )
