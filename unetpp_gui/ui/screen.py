"""The share of the primary screen's free area that a first window or dialog takes."""

from __future__ import annotations

from PySide6.QtGui import QGuiApplication

#: A first window takes this share of the screen's free area (task bars excluded).
SCREEN_SHARE = 0.92


def screen_share() -> tuple[int, int] | None:
    """92 % of the primary screen's free width and height, or None without a screen."""
    screen = QGuiApplication.primaryScreen()
    if screen is None:
        return None
    area = screen.availableGeometry()
    return int(area.width() * SCREEN_SHARE), int(area.height() * SCREEN_SHARE)
