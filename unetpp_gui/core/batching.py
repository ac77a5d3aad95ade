"""Batch size chosen by measurement: the fastest per-slice time of a few sizes, on this machine and model.

Machines differ (on a 2-core AVX2 CPU batch 1 was fastest, on an AVX-512 one 4 or 8), so a constant is
wrong somewhere. The first use of a model on a machine times each candidate on a blank batch (a few
seconds) and caches the choice, keyed by the model file, the inference variant and the CPU. The same
cache holds, for ``runtime="auto"``, how fast OpenVINO and TensorFlow ran this model here (:func:`keeps_openvino`).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

#: Sizes timed. 8 was dropped (2026-12-06): it was never more than 5 % faster per slice than 4 on any machine
#: measured (AVX-512 float32 +4.7 %, bfloat16 +0.7 %; slower on AVX2 code paths), and timing it was over half
#: of the measurement (3 calls of 8 slices per runtime), which a first run pays in full.
CANDIDATES = (1, 2, 4)
#: Below this many slices a run is too short for a measurement to pay back.
MIN_SLICES_TO_MEASURE = 32


def cache_root() -> Path:
    """The app's cache folder (XDG_CACHE_HOME, else ~/.cache): measurements and converted models."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "unetpp-viewer"


def cache_path() -> Path:
    return cache_root() / "batch_sizes.json"


def cache_key(model: Any, runtime: str | None = None) -> str:
    """What a measurement depends on: the model file and variant, the runtime (``model``'s unless given), the
    machine and an ISA cap."""
    try:
        st = model.path.stat()
        stamp = f"{st.st_size}:{int(st.st_mtime)}"
    except OSError:
        stamp = "?"
    from unetpp_gui.core.model_io import cpu_info, isa_cap

    cap = isa_cap()
    runtime = runtime or getattr(model, "runtime", "tensorflow")
    return (f"{Path(model.path).resolve()}:{stamp}:{model.precision}:{runtime}:"
            f"tta={model.tta}:L={model.prune_level}:"
            f"{cpu_info()[0]}:{os.cpu_count()}" + (f":isa={cap}" if cap else ""))


def measure(model: Any, candidates: tuple[int, ...] = CANDIDATES, hw: tuple[int, int] = (256, 256)) -> dict[int, float]:
    """Seconds per slice for each batch size (one untimed call each to trace it, then one timed call)."""
    hw = model.input_hw or hw
    times = {}
    for n in candidates:
        batch = np.zeros((n, *hw, model.channels), np.float32)
        model.predict_batch(batch)
        start = time.perf_counter()
        model.predict_batch(batch)
        times[n] = (time.perf_counter() - start) / n
    return times


def best_batch_size(model: Any, cache: Path | None = None) -> tuple[int, dict[int, float], bool]:
    """(size, seconds per slice by size, whether it came from the cache)."""
    cache = cache or cache_path()
    key = cache_key(model)
    known = _read(cache)
    if key in known:
        entry = known[key]
        return int(entry["size"]), {int(k): float(v) for k, v in entry["times"].items()}, True
    times = measure(model)
    return _remember_sizes(cache, model, times), times, False


def _remember_sizes(cache: Path, model: Any, times: dict[int, float]) -> int:
    """Cache a batch-size measurement for ``model`` as it runs now; returns the fastest size."""
    size = min(times, key=times.get)
    _remember(cache, cache_key(model), {"size": size, "times": {str(k): round(v, 5) for k, v in times.items()}})
    return size


def _read(cache: Path) -> dict:
    try:
        known = json.loads(cache.read_text())
    except (OSError, ValueError):
        return {}
    return known if isinstance(known, dict) else {}


def _remember(cache: Path, key: str, entry: dict) -> None:
    from unetpp_gui.core.atomic import atomic_write_bytes

    known = _read(cache)
    known[key] = entry
    try:
        atomic_write_bytes(cache, json.dumps(known, indent=1).encode())
    except OSError:
        pass  # a read-only home only costs the measurement next time


#: OpenVINO is kept unless it measured more than this factor slower than TensorFlow per slice. A start that runs
#: OpenVINO from its cached conversion never imports TensorFlow (model_io's fast start: 3-4 s and ~680 MB less per
#: start), so a tie goes to OpenVINO. The measurement is short and noisy (on the same machine and code paths it
#: found OpenVINO 6.5 % faster in one run and 7 % slower in the next). Measured on 300 slices, whole processes
#: (benchmarks/bench_process.py, 2 cores): OpenVINO's fast start 16.2 s vs TensorFlow 19.9 s where OpenVINO measured
#: 8 % faster per slice; 29.3 vs 33.6 s on AVX2 code paths (also 8 %).
RUNTIME_TOLERANCE = 1.05


def _choice_key(model: Any) -> str:
    return "runtime-choice:" + cache_key(model, runtime="openvino")


def keeps_openvino(times: dict[str, float]) -> bool:
    """The rule of ``runtime="auto"`` on seconds per slice by runtime: keep OpenVINO?"""
    return times["openvino"] <= RUNTIME_TOLERANCE * times["tensorflow"]


def cached_runtime_choice(model: Any, cache: Path | None = None) -> tuple[bool, dict[str, float]] | None:
    """An earlier start's answer for this model, variant and machine (keep OpenVINO, seconds per slice by
    runtime), or None if it never measured; readable before OpenVINO is loaded, so a start that will keep
    TensorFlow need not load it."""
    known = _read(cache or cache_path()).get(_choice_key(model))
    if not isinstance(known, dict) or not {"tensorflow", "openvino"} <= set(known):
        return None
    times = {k: float(v) for k, v in known.items()}
    return keeps_openvino(times), times


def keep_openvino(model: Any, cache: Path | None = None) -> tuple[bool, dict[str, float]]:
    """For a model running on OpenVINO that has no earlier answer (:func:`cached_runtime_choice`): is it faster
    than TensorFlow here? Each runtime is timed at every candidate batch size, the two runtimes in turn (best of
    two calls each), and judged by its fastest size; the answer is cached per model, variant and machine, and
    so is each runtime's batch-size measurement (:func:`best_batch_size` then finds it). Returns (keep
    OpenVINO, best seconds per slice by runtime)."""
    cache = cache or cache_path()
    runner, runtime = model.runtime_runner, model.runtime
    runtimes = (("tensorflow", None), ("openvino", runner))

    def run(name: str, use: Any, batch: np.ndarray) -> float:
        model.runtime_runner, model.runtime = use, name
        start = time.perf_counter()
        model.predict_batch(batch)
        return (time.perf_counter() - start) / len(batch)

    # Interleaved, best of two timed calls: other work on the machine (it may be busy) then slows both
    # runtimes alike instead of whichever happened to run second.
    by_size: dict[str, dict[int, float]] = {name: {} for name, _ in runtimes}
    try:
        for n in CANDIDATES:
            batch = np.zeros((n, *(model.input_hw or (256, 256)), model.channels), np.float32)
            for name, use in runtimes:  # untimed: traces / compiles this size
                run(name, use, batch)
            for _ in range(2):
                for name, use in runtimes:
                    by_size[name][n] = min(by_size[name].get(n, float("inf")), run(name, use, batch))
    finally:
        model.runtime_runner, model.runtime = runner, runtime
    times = {}
    for name, use in runtimes:
        model.runtime_runner, model.runtime = use, name  # the cache key names the runtime
        _remember_sizes(cache, model, by_size[name])
        times[name] = min(by_size[name].values())
    model.runtime_runner, model.runtime = runner, runtime
    _remember(cache, _choice_key(model), {k: round(v, 5) for k, v in times.items()})
    return keeps_openvino(times), times


def describe_runtimes(times: dict[str, float], cached: bool) -> str:
    """Why ``runtime="auto"`` chose as it did, for the runtime note."""
    per = ", ".join(f"{name} {1000 * t:.0f} ms" for name, t in sorted(times.items()))
    margin = f"{RUNTIME_TOLERANCE - 1:.0%}"
    rule = (f"OpenVINO kept: not over {margin} slower, and later starts skip TensorFlow" if keeps_openvino(times)
            else f"TensorFlow kept: OpenVINO over {margin} slower")
    return f"measured here: {per} per slice{', cached' if cached else ''}; {rule}"


def describe(size: int, times: dict[int, float], cached: bool) -> str:
    per = ", ".join(f"{n}: {1000 * t:.0f} ms" for n, t in sorted(times.items()))
    return f"batch size {size} (fastest per slice on this machine{', cached' if cached else ''}: {per})"
