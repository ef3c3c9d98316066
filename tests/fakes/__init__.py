"""Stand-ins for the programs and libraries the app drives."""

from __future__ import annotations

import sys
from pathlib import Path

CLOUDFLARED_STANDIN = Path(__file__).with_name("cloudflared_standin.py")


def cloudflared_script() -> str:
    """The stand-in cloudflared as an executable script for this interpreter."""
    return f"#!{sys.executable}\n" + CLOUDFLARED_STANDIN.read_text()


def install_cloudflared(folder: Path) -> Path:
    """FOLDER/bin/cloudflared: a real executable (no shell involved in running it)."""
    binary = folder / "bin" / "cloudflared"
    binary.parent.mkdir(parents=True)
    binary.write_text(cloudflared_script())
    binary.chmod(0o755)
    return binary
