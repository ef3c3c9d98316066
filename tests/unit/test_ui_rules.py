"""House rules of the UI code that no linter has a rule for."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

UI = REPO / "app" / "ui"


def nested_loops(path: Path) -> list[str]:
    """Calls of `.exec()` / `.exec_()`: a dialog's own event loop inside qasync's."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    return [
        f"{path.name}:{node.lineno}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in ("exec", "exec_")
    ]


def test_the_ui_never_runs_a_nested_event_loop() -> None:
    found = [where for path in sorted(UI.rglob("*.py")) for where in nested_loops(path)]
    assert found == [], "open the dialog and await it (app.ui.ask.answer_of) instead"


def test_the_rule_finds_an_exec(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text("def f(dialog):\n    return dialog.exec()\n", encoding="utf-8")
    assert nested_loops(probe) == ["probe.py:2"]
