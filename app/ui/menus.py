"""The main window's menu bar: every action of the toolbar and of the rows, in menus, with the
standard shortcuts; the row actions also as the table's context menu. One QAction each, shared
by the toolbar, the menus and the context menu, so they are enabled and named alike."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QMainWindow, QMenu, QWidget

StandardKey = QKeySequence.StandardKey
# The toolbar's actions by key, then the window's own; None separates.
MENUS: tuple[tuple[str, tuple[str | None, ...]], ...] = (
    ("&File", ("setup", "master", "settings", None, "quit")),
    ("F&leet", ("start_all", "stop_all", None, "check_now", "test_fleet", "tunnel")),
    (
        "&Worker",
        (
            "add_worker",
            "edit",
            "remove",
            None,
            "start",
            "stop",
            "restart",
            None,
            "logs",
            "open_in_browser",
            "copy_reason",
        ),
    ),
    ("&Jobs", ("jobs", "test_fleet")),
    ("&Queue", ()),  # the application adds its panel's actions
    ("&Cloud", ()),
    ("&View", ("gpus",)),
    ("&Help", ("about",)),
)
ROW_MENU = (
    "open_in_browser",
    "copy_reason",
    "logs",
    None,
    "start",
    "stop",
    "restart",
    None,
    "edit",
    "remove",
)
SHORTCUTS: dict[str, tuple[QKeySequence | StandardKey | str, ...]] = {
    "quit": (StandardKey.Quit, "Ctrl+Q"),  # (Quit is empty on some desktops)
    "settings": ("Ctrl+,",),
    "add_worker": (StandardKey.New,),
    "check_now": (StandardKey.Refresh,),
    "jobs": ("Ctrl+R",),
    "test_fleet": ("Ctrl+T",),
    "logs": ("Ctrl+L",),
    "open_in_browser": ("Ctrl+B",),
    "gpus": ("Ctrl+G",),
}
# Keys that mean something else in a text field: they act only while the table has the focus.
TABLE_SHORTCUTS: dict[str, tuple[QKeySequence | StandardKey | str, ...]] = {
    "edit": ("F2", "Return", "Enter"),
    "remove": (StandardKey.Delete,),
    "copy_reason": (StandardKey.Copy,),
}


def _keys(specs: tuple[QKeySequence | StandardKey | str, ...]) -> list[QKeySequence]:
    keys: list[QKeySequence] = []
    for spec in specs:
        found = QKeySequence.keyBindings(spec) if isinstance(spec, StandardKey) else [spec]
        keys += [QKeySequence(k) for k in found if QKeySequence(k) not in keys]
    return [k for k in keys if not k.isEmpty()]


class MenuBar:
    """Builds the window's menus from `actions` (the toolbar's and the window's own)."""

    def __init__(self, window: QMainWindow, actions: dict[str, QAction], table: QWidget) -> None:
        self.menus: dict[str, QMenu] = {}
        self.actions = actions
        for key, specs in SHORTCUTS.items():
            if key in actions:
                actions[key].setShortcuts(_keys(specs))
        for key, specs in TABLE_SHORTCUTS.items():
            action = actions[key]
            action.setShortcuts(_keys(specs))
            action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            table.addAction(action)  # (a shortcut acts where its action was added)
        bar = window.menuBar()
        for title, keys in MENUS:
            menu = bar.addMenu(title)
            menu.setObjectName(title.replace("&", "").lower() + "Menu")
            self.menus[title.replace("&", "")] = menu
            self._fill(menu, keys)
        self.row_menu = QMenu(table)
        self.row_menu.setObjectName("rowMenu")
        self._fill(self.row_menu, ROW_MENU)

    def _fill(self, menu: QMenu, keys: tuple[str | None, ...]) -> None:
        for key in keys:
            if key is None:
                menu.addSeparator()
            elif key in self.actions:
                menu.addAction(self.actions[key])
