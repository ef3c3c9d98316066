"""The missing-models script, run for real: resumable downloads from a loopback server into the
worker's model folders, a gated file's token read when it runs and written nowhere."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path

import pytest
from aiohttp import web

from app.core.ui_workflow import model_sources
from app.core.workflow import ModelRef, PreflightResult, missing_models_script
from tests.conftest import RECORDINGS
from tests.local_server import local_server

SECRET = "hf_planted_token_for_this_test"
MODEL = bytes(range(256)) * 4096  # 1 MiB


def test_a_templates_models_become_downloads_with_their_site() -> None:
    ui = (RECORDINGS / "ui_workflows" / "t05_esrgan_upscale" / "ui.json").read_text()
    sources = model_sources(json.loads(ui))
    missing = PreflightResult(
        "w1",
        missing_models=(
            ModelRef("checkpoints", "DreamShaper_8_pruned.safetensors"),
            ModelRef("upscale_models", "RealESRGAN_x4plus.safetensors"),
            ModelRef("loras", "not_listed.safetensors"),
        ),
    )
    script = missing_models_script([missing], sources)
    assert (
        "fetch https://huggingface.co/Lykon/DreamShaper/resolve/main/DreamShaper_8_pruned."
        "safetensors models/checkpoints/DreamShaper_8_pruned.safetensors huggingface"
    ) in script
    assert "models/upscale_models/RealESRGAN_x4plus.safetensors huggingface" in script
    assert '# curl -L -o models/loras/not_listed.safetensors "$URL"' in script


@pytest.mark.asyncio
@pytest.mark.skipif(shutil.which("curl") is None, reason="the script downloads with curl")
async def test_the_script_resumes_and_sends_the_token_only_when_it_runs(tmp_path: Path) -> None:
    seen: list[tuple[str, str, str]] = []

    async def serve(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        auth = request.headers.get("Authorization", "")
        seen.append((name, auth, request.headers.get("Range", "")))
        if name == "gated.safetensors" and auth != f"Bearer {SECRET}":
            return web.Response(status=401, text="gated")
        start = int(request.headers.get("Range", "bytes=0-")[6:].split("-")[0] or 0)
        if not start:
            return web.Response(body=MODEL)
        ranged = {"Content-Range": f"bytes {start}-{len(MODEL) - 1}/{len(MODEL)}"}
        return web.Response(status=206, body=MODEL[start:], headers=ranged)

    async with local_server("/files/{name}", serve) as url:
        sources = {
            "gated.safetensors": f"{url}/files/gated.safetensors",
            "open.safetensors": f"{url}/files/open.safetensors",
        }
        missing = PreflightResult(
            "w1",
            missing_models=(
                ModelRef("checkpoints", "gated.safetensors"),
                ModelRef("vae", "open.safetensors"),
            ),
        )
        script = missing_models_script([missing], sources)
        assert SECRET not in script
        # a loopback URL is no known site: name the site this gated file needs, as for HF
        script = script.replace(
            "models/checkpoints/gated.safetensors\n",
            "models/checkpoints/gated.safetensors huggingface\n",
        )
        (tmp_path / "get.sh").write_text(script)
        part = tmp_path / "models" / "checkpoints" / "gated.safetensors.part"
        part.parent.mkdir(parents=True)
        part.write_bytes(MODEL[:300_000])  # an earlier download stopped here
        env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "HF_TOKEN": SECRET}
        process = await asyncio.create_subprocess_exec(
            "sh",
            "get.sh",
            cwd=tmp_path,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    assert (tmp_path / "models" / "checkpoints" / "gated.safetensors").read_bytes() == MODEL
    assert (tmp_path / "models" / "vae" / "open.safetensors").read_bytes() == MODEL
    assert not part.exists()
    assert ("gated.safetensors", f"Bearer {SECRET}", "bytes=300000-") in seen
    assert ("open.safetensors", "", "") in seen  # no token where none is needed
    assert all(SECRET not in p.read_text(errors="replace") for p in tmp_path.glob("*.sh"))
