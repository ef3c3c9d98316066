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

from app.core.model_script import missing_models_script, refused_models
from app.core.ui_workflow import model_sources
from app.core.workflow import ModelRef, PreflightResult
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
        "https://huggingface.co/Lykon/DreamShaper/resolve/main/DreamShaper_8_pruned."
        "safetensors\tmodels/checkpoints/DreamShaper_8_pruned.safetensors\thuggingface\n"
    ) in script
    assert "\tmodels/upscale_models/RealESRGAN_x4plus.safetensors\thuggingface\n" in script
    assert "# fill by hand: models/loras/not_listed.safetensors" in script


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
            "models/checkpoints/gated.safetensors\t\n",
            "models/checkpoints/gated.safetensors\thuggingface\n",
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


HOSTILE_NAMES = [
    "../../../escaped.safetensors",
    "/tmp/absolute.safetensors",
    "ok.safetensors\ntouch PWNED",
    "$(touch PWNED).safetensors",
    "`touch PWNED`.safetensors",
    "a/../../escaped.safetensors",
    "-o.safetensors",
    "quote'\"; touch PWNED; '.safetensors",
]


def test_unsafe_model_names_and_sources_never_reach_the_script() -> None:
    refs = tuple(ModelRef("checkpoints", name, "4") for name in HOSTILE_NAMES)
    sources = {ref.filename: "https://huggingface.co/x/y/resolve/main/z" for ref in refs}
    bad_urls = {
        "u1.safetensors": 'https://example.org/x"\noutput = "/tmp/evil',
        "u2.safetensors": "file:///etc/passwd",
        "u3.safetensors": "http://example.org/plain-http",
        "u4.safetensors": "https://huggingface.co@example.org/steal-the-token",
        "u5.safetensors": "https://example.org/$(touch PWNED)",
        "u6.safetensors": "https://example.org/a b",
    }
    sources.update(bad_urls)
    refs += tuple(ModelRef("loras", name, "7") for name in bad_urls)
    result = PreflightResult("w1\ntouch PWNED", missing_models=refs)
    script = missing_models_script([result], sources)
    refused = refused_models([result], sources)
    assert len(refused) == len(HOSTILE_NAMES) + len(bad_urls)
    assert (
        "node 4's checkpoints model '../../../escaped.safetensors' is not a plain file"
        in (refused[0])
    )
    body = script[script.index("# --- ") :]
    assert "fetch_all" not in body  # nothing passed, so nothing is downloaded
    assert all(line.startswith("#") for line in body.splitlines())  # each one a comment line
    assert "\ntouch PWNED" not in script


def test_a_safe_name_keeps_its_subfolder_and_a_token_goes_only_to_its_site() -> None:
    ref = ModelRef("checkpoints", "SDXL/Juggernaut XL (v9).safetensors")
    sources = {
        ref.filename: "https://huggingface.co/a/b/resolve/main/j.safetensors",
        "lookalike.safetensors": "https://huggingface.co.example.org/j.safetensors",
    }
    refs = (ref, ModelRef("vae", "lookalike.safetensors"))
    script = missing_models_script([PreflightResult("w1", missing_models=refs)], sources)
    assert "\tmodels/checkpoints/SDXL/Juggernaut XL (v9).safetensors\thuggingface\n" in script
    assert "\tmodels/vae/lookalike.safetensors\t\n" in script  # no token for a look-alike host


@pytest.mark.asyncio
@pytest.mark.skipif(shutil.which("curl") is None, reason="the script downloads with curl")
async def test_the_script_run_for_real_writes_only_inside_the_model_folders(
    tmp_path: Path,
) -> None:
    """Hostile names and URLs next to good ones, run in a sandboxed HOME: the good ones land,
    nothing runs, nothing is written elsewhere, and a redirect to another host gets no token."""
    seen: list[tuple[str, str]] = []

    async def serve(request: web.Request) -> web.StreamResponse:
        seen.append((request.host, request.headers.get("Authorization", "")))
        return web.Response(body=MODEL)

    async def redirect(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(f"{other}/files/{request.match_info['name']}")

    worker = tmp_path / "worker"
    worker.mkdir()
    async with (
        local_server("/files/{name}", redirect) as url,
        local_server("/files/{name}", serve, host="127.0.0.2") as other,
    ):
        good = ModelRef("checkpoints", "sub/good model.safetensors")
        refs = (good, *(ModelRef("vae", name, "9") for name in HOSTILE_NAMES))
        sources = {ref.filename: f"{url}/files/m.safetensors" for ref in refs}
        sources["../../../escaped.safetensors"] = f'{url}/x"\noutput = "{tmp_path}/evil'
        script = missing_models_script([PreflightResult("w1", missing_models=refs)], sources)
        # a loopback URL is no known site: name the site as for a gated HF file
        script = script.replace(
            "models/checkpoints/sub/good model.safetensors\t\n",
            "models/checkpoints/sub/good model.safetensors\thuggingface\n",
        )
        (worker / "get.sh").write_text(script)
        env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "HF_TOKEN": SECRET}
        process = await asyncio.create_subprocess_exec(
            "sh", "get.sh", cwd=worker, env=env, stderr=asyncio.subprocess.PIPE
        )
        _, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    assert (worker / "models" / "checkpoints" / "sub" / "good model.safetensors").read_bytes() == (
        MODEL
    )
    files = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert files == ["worker/get.sh", "worker/models/checkpoints/sub/good model.safetensors"]
    assert seen == [(other.removeprefix("http://"), "")]  # redirected: the token stayed behind
