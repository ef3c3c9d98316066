"""The node catalogue recorded from a real ComfyUI, with model lists from the sim's settings.

Which folder each loader input lists is as the recordings show it: the models that the shipped
templates in recordings/ui_workflows declare (file and folder) are the values of these inputs
in the prompts the real frontend made, and the cpu run's one upscale model appears in
UpscaleModelLoader's list (tests/integration/test_sim_fidelity.py derives them again).
"""

from __future__ import annotations

import copy
import gzip
import json
from functools import cache
from pathlib import Path
from typing import Any

_DATA = Path(__file__).with_name("data") / "object_info.json.gz"


@cache
def _recorded() -> dict[str, Any]:
    with gzip.open(_DATA, "rt", encoding="utf-8") as handle:
        data: dict[str, Any] = json.load(handle)
    return data


EXTENSION_MODULE = "custom_nodes.ComfyUI-Distributed"
# The files the recording machine had (its one upscale model): the recorded lists hold them
# and the entries that are no file (VAELoader's "pixel_space"), which every instance lists.
RECORDING_MACHINE_FILES = frozenset({"tiny_compact_x2.safetensors"})
MODEL_INPUTS: dict[tuple[str, str], str] = {
    ("AudioEncoderLoader", "audio_encoder_name"): "audio_encoders",
    ("CLIPLoader", "clip_name"): "text_encoders",
    ("CLIPVisionLoader", "clip_name"): "clip_vision",
    ("CheckpointLoaderSimple", "ckpt_name"): "checkpoints",
    ("ControlNetLoader", "control_net_name"): "controlnet",
    ("DualCLIPLoader", "clip_name1"): "text_encoders",
    ("DualCLIPLoader", "clip_name2"): "text_encoders",
    ("LoraLoader", "lora_name"): "loras",
    ("LoraLoaderModelOnly", "lora_name"): "loras",
    ("QuadrupleCLIPLoader", "clip_name1"): "text_encoders",
    ("QuadrupleCLIPLoader", "clip_name2"): "text_encoders",
    ("QuadrupleCLIPLoader", "clip_name3"): "text_encoders",
    ("QuadrupleCLIPLoader", "clip_name4"): "text_encoders",
    ("StyleModelLoader", "style_model_name"): "style_models",
    ("UNETLoader", "unet_name"): "diffusion_models",
    ("UpscaleModelLoader", "model_name"): "upscale_models",
    ("VAELoader", "vae_name"): "vae",
}


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
                folder = MODEL_INPUTS.get((class_type, name))
                if folder is None:
                    continue
                recorded = combo_options(spec) or []
                specials = [o for o in recorded if o not in RECORDING_MACHINE_FILES]
                files = list(models.get(folder, [])) + specials  # VAELoader's "pixel_space"
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
