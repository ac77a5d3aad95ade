"""What the window shows before any slice is open: how to start, recent folders, the model's state."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QHBoxLayout, QLabel, QListWidget, QPushButton, QVBoxLayout, QWidget

MAX_RECENT = 6


def remember_folder(settings: Any, folder: str) -> None:
    """Put ``folder`` first in the settings' recent folders (at most :data:`MAX_RECENT`)."""
    recent = [f for f in recent_folders(settings) if f != folder]
    settings.setValue("recent_folders", [folder, *recent][:MAX_RECENT])


def recent_folders(settings: Any) -> list[str]:
    value = settings.value("recent_folders", [])
    if isinstance(value, str):  # QSettings returns a lone string for a one-item list
        value = [value]
    return [str(v) for v in (value or [])]


class EmptyState(QWidget):
    """The start page: open buttons, a drop hint, recent folders and the model's loading state."""

    def __init__(self, win: Any) -> None:
        super().__init__()
        from unetpp_gui.ui import menus

        self.win = win
        title = QLabel("<h2>Open slices or a folder to begin</h2>")
        hint = QLabel("PNG, JPEG, TIFF or BMP slices; a folder is searched recursively and each sub-folder is "
                      "one patient. You can also drop files and folders anywhere on this window.")
        hint.setWordWrap(True)
        self.open_files = QPushButton("Open slices…")
        self.open_folder = QPushButton("Open folder…")
        self.open_files.clicked.connect(lambda: menus.open_files_dialog(win))
        self.open_folder.clicked.connect(lambda: menus.open_folder_dialog(win))
        buttons = QHBoxLayout()
        buttons.addWidget(self.open_files)
        buttons.addWidget(self.open_folder)
        buttons.addStretch(1)
        self.model_state = QLabel("")
        self.model_state.setStyleSheet("color: #5f6368;")
        self.recent_title = QLabel("<b>Recent folders</b> (double-click to open)")
        self.recent = QListWidget()
        self.recent.setMaximumHeight(150)
        self.recent.itemActivated.connect(lambda item: win.open_paths([item.text()]))
        layout = QVBoxLayout(self)
        layout.addStretch(1)
        for w in (title, hint):
            layout.addWidget(w)
        layout.addLayout(buttons)
        layout.addSpacing(12)
        layout.addWidget(self.model_state)
        layout.addSpacing(12)
        layout.addWidget(self.recent_title)
        layout.addWidget(self.recent)
        layout.addStretch(2)
        layout.setAlignment(Qt.AlignHCenter)
        self.setMaximumWidth(10_000)
        self.refresh()

    def refresh(self) -> None:
        folders = [f for f in recent_folders(self.win.settings) if Path(f).is_dir()]
        self.recent.clear()
        self.recent.addItems(folders)
        self.recent.setVisible(bool(folders))
        self.recent_title.setVisible(bool(folders))

    def set_model_state(self, text: str) -> None:
        self.model_state.setText(text)
