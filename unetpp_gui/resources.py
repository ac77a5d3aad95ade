"""Where bundled resources live: the source tree, an installed checkout, or a PyInstaller bundle."""

from __future__ import annotations

import os
import sys
from pathlib import Path

BUNDLED_MODEL_NAME = "unetpp_lgg.h5"


def resources_dir() -> Path:
    """The ``resources/`` folder (override with ``UNETPP_RESOURCES``)."""
    env = os.environ.get("UNETPP_RESOURCES")
    if env:
        return Path(env)
    frozen = getattr(sys, "_MEIPASS", None)
    if frozen:
        return Path(frozen) / "resources"
    return Path(__file__).resolve().parent.parent / "resources"


def bundled_model_path() -> Path:
    return resources_dir() / "models" / BUNDLED_MODEL_NAME


def model_card_path() -> Path:
    return resources_dir() / "models" / "MODEL_CARD.md"
