"""The node catalogue recorded from a real ComfyUI, with model lists from the sim's settings."""

from __future__ import annotations

import copy
import gzip
import json
from functools import cache
from pathlib import Path
from typing import Any

_DATA = Path(__file__).with_name("data") / "object_info.json.gz"

# Which model folder fills a loader's list (ComfyUI: folder_paths.get_filename_list).
INPUT_FOLDERS = {
    "ckpt_name": "checkpoints",
    "lora_name": "loras",
    "vae_name": "vae",
    "control_net_name": "controlnet",
    "unet_name": "diffusion_models",
    "clip_name": "text_encoders",
    "style_model_name": "style_models",
    "gligen_name": "gligen",
    "hypernetwork_name": "hypernetworks",
    "photomaker_model_name": "photomaker",
}
CLASS_INPUT_FOLDERS = {("UpscaleModelLoader", "model_name"): "upscale_models"}


@cache
def _recorded() -> dict[str, Any]:
    with gzip.open(_DATA, "rt", encoding="utf-8") as handle:
        data: dict[str, Any] = json.load(handle)
    return data


def model_folder(class_type: str, input_name: str) -> str | None:
    return CLASS_INPUT_FOLDERS.get((class_type, input_name)) or INPUT_FOLDERS.get(input_name)


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
