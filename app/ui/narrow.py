"""What keeps a panel usable in a narrow dock: buttons that wrap onto more lines instead of
running off the edge, and table columns shown by priority (the first ones) as far as they fit."""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, QPoint, QRect, QSize, Qt
from PySide6.QtWidgets import QLayout, QLayoutItem, QTableView, QWidget, QWidgetItem


class FlowLayout(QLayout):
    """Left to right, wrapping like words; its height follows its width."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._items: list[QLayoutItem] = []
        self.setContentsMargins(0, 0, 0, 0)

    def addItem(self, item: QLayoutItem) -> None:
        self._items.append(item)

    def add(self, widget: QWidget) -> None:
        self.addChildWidget(widget)
        self.addItem(QWidgetItem(widget))

    def count(self) -> int:
        return len(self._items)

    def itemAt(self, index: int) -> QLayoutItem | None:
        return self._items[index] if 0 <= index < len(self._items) else None

    def takeAt(self, index: int) -> QLayoutItem | None:
        return self._items.pop(index) if 0 <= index < len(self._items) else None

    def expandingDirections(self) -> Qt.Orientation:
        return Qt.Orientation(0)

    def hasHeightForWidth(self) -> bool:
        return True

    def heightForWidth(self, width: int) -> int:
        return self._arrange(QRect(0, 0, width, 0), move=False)

    def setGeometry(self, rect: QRect) -> None:
        super().setGeometry(rect)
        self._arrange(rect, move=True)

    def sizeHint(self) -> QSize:
        return self.minimumSize()

    def minimumSize(self) -> QSize:
        size = QSize()
        for item in self._items:
            size = size.expandedTo(item.minimumSize())
        margins = self.contentsMargins()
        return size.grownBy(margins)

    def _arrange(self, rect: QRect, move: bool) -> int:
        margins = self.contentsMargins()
        area = rect.marginsRemoved(margins)
        spacing = max(0, self.spacing()) or 6
        x, y, line = area.x(), area.y(), 0
        for item in self._items:
            if item.isEmpty():  # (a hidden button takes no room)
                continue
            hint = item.sizeHint()
            if x > area.x() and x + hint.width() > area.right() + 1:
                x, y, line = area.x(), y + line + spacing, 0
            if move:
                item.setGeometry(QRect(QPoint(x, y), hint))
            x += hint.width() + spacing
            line = max(line, hint.height())
        return y + line - rect.y() + margins.bottom()


def button_row(*widgets: QWidget) -> QWidget:
    """A row of buttons that wraps in a narrow dock."""
    row = QWidget()
    flow = FlowLayout(row)
    for widget in widgets:
        flow.add(widget)
    return row


class ColumnsThatFit(QObject):
    """Shows a table's columns from the first as far as the view is wide (the first always);
    the others come back when it is widened."""

    def __init__(self, view: QTableView) -> None:
        super().__init__(view)
        self.view = view
        view.viewport().installEventFilter(self)
        model = view.model()
        for signal in (model.modelReset, model.rowsInserted, model.dataChanged):
            signal.connect(self.fit)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.Resize:
            self.fit()
        return False

    def fit(self, *_: object) -> None:
        view, header = self.view, self.view.horizontalHeader()
        room = view.viewport().width()
        used = 0
        for column in range(view.model().columnCount()):
            wanted = max(header.sectionSizeHint(column), view.sizeHintForColumn(column))
            used += wanted
            header.setSectionHidden(column, column > 0 and used > room)
