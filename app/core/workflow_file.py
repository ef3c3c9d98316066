"""What a workflow file holds: an API prompt, a UI-format workflow (ComfyUI's Save), or an image
or video ComfyUI made (its prompt and workflow inside). Pure: bytes in, a WorkflowFile out."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from app.core.codec import parse_json
from app.core.image_meta import MAX_TEXT_BYTES, embedded_texts, is_media
from app.core.ui_workflow import is_ui_workflow, model_sources
from app.core.workflow import Workflow, WorkflowError, load_workflow

EXTENSIONS = (".json", ".png", ".webp", ".mp4")  # what file dialogs and drops offer


@dataclass(frozen=True)
class WorkflowFile:
    prompt: Workflow | None  # ready to run (API format)
    ui: dict[str, Any] | None  # the UI workflow: converted when there is no prompt
    kind: str  # what it was, in words

    @property
    def needs_conversion(self) -> bool:
        return self.prompt is None

    @property
    def model_sources(self) -> dict[str, str]:
        """Model file name → download URL, as its UI workflow lists them."""
        return {} if self.ui is None else model_sources(self.ui)


def read_workflow(data: bytes, name: str = "the file") -> WorkflowFile:
    """An image runs exactly the prompt it carries (else its converted workflow); a JSON file is
    an API prompt or a UI-format workflow."""
    if is_media(data):
        return _from_image(data, name)
    if len(data) > MAX_TEXT_BYTES:
        raise WorkflowError(too_big(name, len(data)))
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise WorkflowError(
            f"{name} is not UTF-8 text (byte {exc.start}), nor a PNG, WebP or MP4 ComfyUI made"
        ) from None
    try:
        parsed = parse_json(text)
    except ValueError:
        parsed = None  # load_workflow says where, or what
    if is_ui_workflow(parsed):
        return WorkflowFile(None, parsed, "a UI-format workflow")
    return WorkflowFile(load_workflow(text), None, "an API-format workflow")


def too_big(name: str, size: int) -> str:
    return (
        f"{name} is {size / 2**20:,.0f} MB of text: no workflow is that big"
        f" (at most {MAX_TEXT_BYTES // 2**20} MB are read)"
    )


def _from_image(data: bytes, name: str) -> WorkflowFile:
    try:
        texts = embedded_texts(data)
    except ValueError as exc:
        raise WorkflowError(f"{name}: cannot read its metadata ({exc})") from None
    prompt = _json(texts.get("prompt"))
    workflow = _json(texts.get("workflow"))
    ui = workflow if is_ui_workflow(workflow) else None
    if isinstance(prompt, dict) and prompt:
        return WorkflowFile(load_workflow(json.dumps(prompt)), ui, "an image made by ComfyUI")
    if ui is not None:
        return WorkflowFile(None, ui, "an image made by ComfyUI (its workflow only)")
    raise WorkflowError(
        f"{name} carries no ComfyUI workflow (made elsewhere, or saved without metadata)"
    )


def _json(text: str | None) -> Any:
    if not text:
        return None
    try:
        return parse_json(text)
    except ValueError:
        return None
