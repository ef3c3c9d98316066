"""The prompt and workflow inside files ComfyUI made: a PNG the real ComfyUI wrote, a WebP
written as its SaveAnimatedWEBP writes one, an MP4 as its SaveVideo writes one."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image

from app.core.image_meta import embedded_texts
from app.core.workflow import WorkflowError
from app.core.workflow_file import read_workflow
from tests.conftest import RECORDINGS

PNG_CASE = RECORDINGS / "ui_workflows" / "png_metadata"
VIDEO = Path(__file__).parent.parent / "data" / "saved_video.mp4"


def test_the_png_the_real_comfyui_wrote() -> None:
    data = (PNG_CASE / "image.png").read_bytes()
    assert embedded_texts(data) == json.loads((PNG_CASE / "text_chunks.json").read_text())
    file = read_workflow(data, "image.png")
    assert file.prompt == json.loads((PNG_CASE / "api.json").read_text())
    assert file.kind == "an image made by ComfyUI" and not file.needs_conversion


def test_a_webp_written_as_save_animated_webp_writes_it() -> None:
    prompt, ui = {"1": {"class_type": "EmptyImage", "inputs": {}}}, {"nodes": [], "links": []}
    frame = Image.new("RGB", (8, 8), "teal")
    exif = frame.getexif()  # nodes_images.py: 0x0110 prompt, then 0x010F, 0x010E… extra_pnginfo
    exif[0x0110] = f"prompt:{json.dumps(prompt)}"
    exif[0x010F] = f"workflow:{json.dumps(ui)}"
    exif[0x010E] = f"other:{json.dumps({'x': 1})}"
    out = io.BytesIO()
    frame.save(out, "WEBP", save_all=True, duration=100, exif=exif, lossless=True)
    texts = embedded_texts(out.getvalue())
    assert json.loads(texts["prompt"]) == prompt and json.loads(texts["workflow"]) == ui
    assert texts["other"] == '{"x": 1}'


def test_an_mp4_written_as_save_video_writes_it() -> None:
    texts = embedded_texts(VIDEO.read_bytes())
    assert json.loads(texts["prompt"])["2"]["class_type"] == "SaveVideo"
    assert json.loads(texts["workflow"])["note"] == "ünïcode ✓"
    file = read_workflow(VIDEO.read_bytes(), "clip.mp4")
    assert file.prompt is not None and file.ui is not None and set(file.prompt) == {"1", "2"}


def test_files_that_carry_nothing_say_so() -> None:
    plain = io.BytesIO()
    Image.new("RGB", (4, 4)).save(plain, "PNG")
    with pytest.raises(WorkflowError, match="holiday.png carries no ComfyUI workflow"):
        read_workflow(plain.getvalue(), "holiday.png")
    with pytest.raises(WorkflowError, match="notes.bin is not UTF-8 text"):
        read_workflow(b"\xff\xfe\x00garbage", "notes.bin")
    truncated = (PNG_CASE / "image.png").read_bytes()[:60]  # cut inside the prompt chunk
    with pytest.raises(WorkflowError):
        read_workflow(truncated, "cut.png")
