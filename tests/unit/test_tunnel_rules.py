"""cloudflared release assets and the pins they are checked against."""

from __future__ import annotations

import re

import pytest

from app.core.tunnel import PINNED_SHA256, release_asset, token_key


@pytest.mark.parametrize(
    ("system", "machine", "name"),
    [
        ("Linux", "x86_64", "cloudflared-linux-amd64"),
        ("Linux", "aarch64", "cloudflared-linux-arm64"),
        ("Darwin", "arm64", "cloudflared-darwin-arm64.tgz"),
        ("Windows", "AMD64", "cloudflared-windows-amd64.exe"),
    ],
)
def test_release_asset_names(system: str, machine: str, name: str) -> None:
    assert release_asset(system, machine).name == name


def test_unknown_platforms_are_refused() -> None:
    with pytest.raises(ValueError, match="CPU"):
        release_asset("Linux", "riscv64")
    with pytest.raises(ValueError, match="FreeBSD"):
        release_asset("FreeBSD", "amd64")


def test_pins_are_sha256_of_real_asset_names() -> None:
    assert "cloudflared-linux-amd64" in PINNED_SHA256
    names = {
        release_asset(s, m).name
        for s in ("Linux", "Darwin", "Windows")
        for m in ("x86_64", "arm64")
    }
    for name, digest in PINNED_SHA256.items():
        assert name in names and re.fullmatch(r"[0-9a-f]{64}", digest), name


def test_token_key_is_per_tunnel() -> None:
    assert token_key("studio") == "tunnel:studio" != token_key("other")
