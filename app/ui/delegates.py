"""Painting for the fleet table: a status light, a VRAM bar and a recent-VRAM line, in the
palette's colours (light or dark)."""

from __future__ import annotations

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QRectF, Qt
from PySide6.QtGui import QColor, QPainter
from PySide6.QtWidgets import QStyle, QStyledItemDelegate, QStyleOptionViewItem

from app.ui.history import draw_line
from app.ui.worker_table import ACTIVITY_POINTS, HISTORY_ROLE, STATUS_COLOR_ROLE, VRAM_ROLE

Index = QModelIndex | QPersistentModelIndex
LINE = QColor("#8430ce")


class StatusLightDelegate(QStyledItemDelegate):
    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: Index) -> None:
        super().paint(painter, option, index)
        color = index.data(STATUS_COLOR_ROLE)
        if not isinstance(color, QColor):
            return
        rect = option.rect
        size = min(rect.height(), rect.width()) * 0.45
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(color)
        painter.drawEllipse(
            QRectF(rect.center().x() - size / 2, rect.center().y() - size / 2, size, size)
        )
        painter.restore()


def _fill(share: float) -> QColor:
    if share > 0.9:
        return QColor("#d93025")
    if share > 0.75:
        return QColor("#f9ab00")
    return QColor("#8ab4f8")


class VramBarDelegate(QStyledItemDelegate):
    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: Index) -> None:
        value = index.data(VRAM_ROLE)
        if not value:
            super().paint(painter, option, index)
            return
        used, total, stale = value
        share = max(0.0, min(1.0, used / total)) if total else 0.0
        rect = option.rect.adjusted(3, 4, -3, -4)
        palette = option.palette
        if option.state & QStyle.StateFlag.State_Selected:
            painter.fillRect(option.rect, palette.highlight())
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(palette.mid().color())
        painter.setBrush(palette.base())
        painter.drawRoundedRect(QRectF(rect), 3, 3)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(palette.mid().color() if stale else _fill(share))
        painter.drawRoundedRect(
            QRectF(rect.x(), rect.y(), rect.width() * share, rect.height()), 3, 3
        )
        text = palette.placeholderText().color() if stale else palette.text().color()
        painter.setPen(text)
        painter.drawText(rect, Qt.AlignmentFlag.AlignCenter, f"{index.data()} ({share * 100:.0f}%)")
        painter.restore()


class ActivityDelegate(QStyledItemDelegate):
    """The last two minutes of VRAM use in the row itself, so the fleet is seen to live."""

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: Index) -> None:
        super().paint(painter, option, index)
        values = index.data(HISTORY_ROLE)
        if not values:
            return
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        rect = QRectF(option.rect).adjusted(4, 5, -4, -5)
        painter.setPen(option.palette.mid().color())
        painter.drawLine(rect.bottomLeft(), rect.bottomRight())
        draw_line(painter, rect, values, ACTIVITY_POINTS, 1.0, LINE)
        painter.restore()
