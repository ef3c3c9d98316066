"""The repository's copies of the recordings and Runpod's spec (tests/data/) against the
originals in ../shared, where a checkout has them beside it (a plain clone does not: the tests
need only the copies)."""

from __future__ import annotations

import filecmp
from pathlib import Path

import pytest

from tests.conftest import DATA, SHARED

COPIES = {"recordings": DATA / "recordings", "runpod": DATA / "runpod"}


def _files(root: Path) -> set[str]:
    return {str(path.relative_to(root)) for path in root.rglob("*") if path.is_file()}


@pytest.mark.parametrize("name", sorted(COPIES))
def test_the_copy_is_the_shared_original(name: str) -> None:
    original = SHARED / name
    if not original.is_dir():
        pytest.skip(f"no {original} beside this checkout: nothing to compare the copy with")
    copy = COPIES[name]
    assert _files(original) <= _files(copy), "files of shared/ missing from the copy"
    differing = [
        rel
        for rel in sorted(_files(original))
        if not filecmp.cmp(original / rel, copy / rel, shallow=False)
    ]
    assert not differing, f"copies differ from shared/{name}: {differing} (copy them again)"


def test_the_copies_are_there() -> None:
    """What the suite reads exists in the repository itself."""
    assert (COPIES["runpod"] / "openapi-v2.json").is_file()
    for run in ("cpu", "gpu-h200", "cli", "workflows", "ui_workflows", "comfyui-0.38"):
        assert any((COPIES["recordings"] / run).iterdir()), run


def test_the_readmes_command_table_is_one_table() -> None:
    """A blank line inside a Markdown table ends it: the rows after it render as text."""
    lines = (DATA.parents[1] / "README.md").read_text(encoding="utf-8").splitlines()
    start = lines.index("| command | what it does |")
    table = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        table.append(line)
    rows = [line for line in lines if line.startswith("| `comfy-fleet")]
    assert rows and all(row in table for row in rows)
