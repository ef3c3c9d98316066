"""Every category of the bad-input catalogue (tests/hostile_cases.py) through the real CLI: one
clear line each (exit 2 for bad input, 1 for a failure), no traceback, nothing lost. Before
these fixes 27 of its 60 cases failed (bench_bad_input at 0118782): 17 tracebacks (damaged
queue.db, deep JSON, PNG and WebP bombs, bad zlib, a self-containing subgraph, bad link
shapes, cloudflared that cannot run), an MP4 whose `keys` box claims four billion entries
looping past 60 s, and UI files of the wrong shape converted as if nothing were wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.hostile_cases import CASES, run_all

CATEGORIES = sorted({case.category for case in CASES})


@pytest.mark.parametrize("category", CATEGORIES)
def test_bad_input_gets_one_clear_line_and_loses_nothing(category: str, tmp_path: Path) -> None:
    outcomes = run_all([c for c in CASES if c.category == category], tmp_path)
    unclear = [o.why() for o in outcomes if not o.clear]
    lost = [f"{o.case.name}: {', '.join(o.lost)}" for o in outcomes if o.lost]
    assert not unclear, "\n\n".join(unclear)
    assert not lost, "files changed or gone: " + "; ".join(lost)
