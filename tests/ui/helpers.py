"""Reading the fleet table the way a person reads it."""

from __future__ import annotations

from app.ui.application import DesktopApp
from app.ui.worker_table import Column


def cell(app: DesktopApp, name: str, column: Column) -> str:
    model = app.window.model
    number = next(i for i, r in enumerate(model.rows()) if r.name == name)
    return str(model.data(model.index(number, column)))
