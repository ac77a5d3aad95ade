"""The layering holds: the engine and training never load Qt, so the CLI, tests and GUI share them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_core_and_training_import_no_qt() -> None:
    modules = sorted({f"unetpp_gui.core.{p.stem}" for p in (ROOT / "unetpp_gui" / "core").glob("*.py")
                      if p.stem != "__init__"} | {f"training.{p.stem}" for p in (ROOT / "training").glob("*.py")
                                                 if p.stem not in ("__init__", "__main__")})
    code = ("import sys, importlib\n"
            f"for m in {modules!r}: importlib.import_module(m)\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('PySide6', 'pyqtgraph', 'superqt'))\n"
            "print(len(sys.modules)); assert not bad, bad\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-2000:]
    assert len(modules) > 30
