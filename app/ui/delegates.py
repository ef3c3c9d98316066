"""Painting for the fleet table: a status light and a VRAM bar."""

from __future__ import annotations

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QRectF, Qt
from PySide6.QtGui import QColor, QPainter
from PySide6.QtWidgets import QStyle, QStyledItemDelegate, QStyleOptionViewItem

from app.ui.worker_table import STATUS_COLOR_ROLE, VRAM_ROLE

Index = QModelIndex | QPersistentModelIndex


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


class VramBarDelegate(QStyledItemDelegate):
    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: Index) -> None:
        value = index.data(VRAM_ROLE)
        if not value:
            super().paint(painter, option, index)
            return
        used, total = value
        share = max(0.0, min(1.0, used / total)) if total else 0.0
        rect = option.rect.adjusted(3, 4, -3, -4)
        if option.state & QStyle.StateFlag.State_Selected:
            painter.fillRect(option.rect, option.palette.highlight())
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(QColor("#c4c7c5"))
        painter.setBrush(QColor("#f1f3f4"))
        painter.drawRoundedRect(QRectF(rect), 3, 3)
        fill = (
            QColor("#d93025")
            if share > 0.9
            else QColor("#f9ab00")
            if share > 0.75
            else QColor("#8ab4f8")
        )
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(fill)
        painter.drawRoundedRect(
            QRectF(rect.x(), rect.y(), rect.width() * share, rect.height()), 3, 3
        )
        painter.setPen(QColor("#202124"))
        text = f"{index.data()} ({share * 100:.0f}%)"
        painter.drawText(rect, Qt.AlignmentFlag.AlignCenter, text)
        painter.restore()
