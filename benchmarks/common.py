"""Shared helpers for the benchmark scripts: machine facts, data, the model, a timer."""

from __future__ import annotations

import os
import platform
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
LGG = Path(os.environ.get("UNETPP_LGG", ROOT.parent / "shared" / "data" / "lgg"))


def machine() -> str:
    from unetpp_gui.core.model_io import cpu_info

    model, flags = cpu_info()
    if model == "CPU":
        model = platform.processor() or model
    wanted = [f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16") if f in flags]
    import tensorflow as tf

    from unetpp_gui.core.model_io import isa_cap

    cap = (f" (**capped**: ONEDNN_MAX_CPU_ISA={isa_cap()}, OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '-')}: "
           "the instruction paths of a CPU without AVX-512, on this CPU's cores, clock and caches)") if isa_cap() else ""
    return (f"{os.cpu_count()} cores, {model}, flags: {' '.join(wanted)}{cap}; Python {platform.python_version()}, "
            f"TensorFlow {tf.__version__}")


def lgg_slices(n: int, patients: list[str] | None = None) -> list[Path]:
    from unetpp_gui.core.discovery import discover

    if not LGG.is_dir():
        sys.exit(f"LGG data not found at {LGG}")
    folders = [LGG / p for p in patients] if patients else sorted(LGG.glob("TCGA_*"))
    out: list[Path] = []
    for folder in folders:
        out.extend(discover([folder]).slices)
        if len(out) >= n:
            break
    return out[:n]


def model_path() -> Path:
    from unetpp_gui.resources import bundled_model_path

    return Path(os.environ.get("UNETPP_BENCH_MODEL", bundled_model_path()))


def validation_patients() -> list[str]:
    from unetpp_gui.core.metadata import read_metadata

    return list(read_metadata(model_path()).training.get("split", {}).get("validation", []))


@contextmanager
def timer() -> Iterator[list[float]]:
    box: list[float] = []
    t0 = time.perf_counter()
    yield box
    box.append(time.perf_counter() - t0)


def timing_marks(stderr: str) -> dict[str, float]:
    """The app's ``timing: <mark> <seconds>`` lines (printed with UNETPP_TIMING=1) as a dict."""
    marks = {}
    for line in stderr.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "timing:":
            marks[parts[1]] = float(parts[2])
    return marks
