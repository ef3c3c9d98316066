"""The node catalogue recorded from a real ComfyUI, with model lists from the sim's settings."""

from __future__ import annotations

import copy
import gzip
import json
from functools import cache
from pathlib import Path
from typing import Any

from app.core.workflow import model_folder

_DATA = Path(__file__).with_name("data") / "object_info.json.gz"


@cache
def _recorded() -> dict[str, Any]:
    with gzip.open(_DATA, "rt", encoding="utf-8") as handle:
        data: dict[str, Any] = json.load(handle)
    return data


EXTENSION_MODULE = "custom_nodes.ComfyUI-Distributed"


def build_catalogue(models: dict[str, list[str]], distributed: bool = True) -> dict[str, Any]:
    """The recorded catalogue with every model list replaced by this instance's files.

    Without ComfyUI-Distributed its node classes do not exist, as on a real ComfyUI.
    """
    catalogue = {
        name: info
        for name, info in copy.deepcopy(_recorded()).items()
        if distributed or info.get("python_module") != EXTENSION_MODULE
    }
    for class_type, info in catalogue.items():
        for section in ("required", "optional"):
            for name, spec in (info["input"].get(section) or {}).items():
                folder = model_folder(class_type, name)
                if folder is None:
                    continue
                files = list(models.get(folder, []))
                if isinstance(spec[0], list):
                    spec[0] = files
                elif len(spec) > 1 and isinstance(spec[1], dict):
                    spec[1]["options"] = files
    return catalogue


def combo_options(spec: list[Any]) -> list[Any] | None:
    if isinstance(spec[0], list):
        return spec[0]
    if spec[0] == "COMBO" and len(spec) > 1 and isinstance(spec[1], dict):
        options = spec[1].get("options")
        return options if isinstance(options, list) else None
    return None
