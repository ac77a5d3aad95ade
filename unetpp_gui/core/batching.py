"""Batch size chosen by measurement: the fastest per-slice time of a few sizes, on this machine and model.

Machines differ (on a 2-core AVX2 CPU batch 1 was fastest, on an AVX-512 one 4 or 8), so a constant is
wrong somewhere. The first use of a model on a machine times each candidate, on the first batches of a
run long enough for it (:class:`Trial`: their results are kept) or else on blank batches (a few seconds), and
caches the choice, keyed by the model file, the inference variant and the CPU. The same cache holds, for
``runtime="auto"``, how fast OpenVINO and TensorFlow ran this model here (:func:`keeps_openvino`).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Iterator

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


def cached_batch_size(model: Any, cache: Path | None = None) -> tuple[int, dict[int, float]] | None:
    """An earlier measurement for this model, variant, runtime and machine: (size, seconds per slice by size)."""
    entry = _read(cache or cache_path()).get(cache_key(model))
    if not isinstance(entry, dict) or "size" not in entry:
        return None
    return int(entry["size"]), {int(k): float(v) for k, v in entry["times"].items()}


def best_batch_size(model: Any, cache: Path | None = None) -> tuple[int, dict[int, float], bool]:
    """(size, seconds per slice by size, whether it came from the cache); measured on blank batches (one
    untimed call per size, then one timed call) where nothing is cached."""
    known = cached_batch_size(model, cache)
    if known is not None:
        return known[0], known[1], True
    trial = Trial(model, {model.runtime: model.runtime_runner}, cache)
    trial.run_blank()
    assert trial.size is not None  # blank batches are always full
    return trial.size, trial.times[model.runtime], False


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
    than TensorFlow here? Both runtimes are timed on blank batches as a :class:`Trial` times them, and the model is
    left on the one kept. Returns (keep OpenVINO, best seconds per slice by runtime); the answer and each
    runtime's batch-size measurement are cached (:func:`best_batch_size` then finds it)."""
    trial = Trial(model, runtimes_of(model), cache)
    trial.run_blank()
    assert trial.decision is not None  # blank batches are always full
    return trial.decision


def runtimes_of(model: Any) -> dict[str, Any]:
    """What a runtime trial compares for a model on OpenVINO: TensorFlow (no runner) and its OpenVINO runner."""
    return {"tensorflow": None, "openvino": model.runtime_runner}


class Trial:
    """Batch sizes, and runtimes where there are two, timed on a run's first batches: the measurement a first
    run on a machine needs (:func:`best_batch_size`, :func:`keep_openvino`), made on the slices it predicts
    anyway, so every measured call yields results instead of being thrown away.

    The plan, for each candidate size in turn: an untimed call per runtime (it compiles or traces that size),
    then ``repeats`` timed calls per runtime, the runtimes interleaved (other work on the machine then slows
    both alike); a runtime is judged by its fastest size, each by its best call. The runtimes give the same
    probabilities (within 1e-5 for OpenVINO against TensorFlow), so which one ran a slice does not matter. A
    step whose batch is not full (a slice that failed to decode, the run's end) runs untimed. After the last
    step the trial remembers what it measured (as the blank-batch measurement did) and leaves the model on the
    runtime kept, with that runtime's fastest size as :attr:`size`.
    """

    def __init__(self, model: Any, runtimes: dict[str, Any], cache: Path | None = None,
                 candidates: tuple[int, ...] = CANDIDATES, repeats: int | None = None) -> None:
        self.model, self.runtimes, self.cache = model, dict(runtimes), cache or cache_path()
        repeats = repeats or (2 if len(runtimes) > 1 else 1)
        self.plan: list[tuple[str, int, bool]] = []
        for n in candidates:
            self.plan += [(name, n, False) for name in runtimes]
            self.plan += [(name, n, True) for _ in range(repeats) for name in runtimes]
        self._finished = False
        self.times: dict[str, dict[int, float]] = {name: {} for name in runtimes}
        self.decision: tuple[bool, dict[str, float]] | None = None  # two runtimes: keep OpenVINO?, best times
        self.size: int | None = None  # the kept runtime's fastest size, once measured

    @property
    def slices(self) -> int:
        """Slices the plan predicts."""
        return sum(n for _, n, _ in self.plan)

    @property
    def done(self) -> bool:
        """Whether the plan has run (what it measured is then remembered, if each runtime had a full timed batch)."""
        return self._finished

    def sizes(self) -> Iterator[int]:
        """The size of each of a run's batches: the plan's, then the size measured fastest. Read one batch ahead
        (the next batch is decoded while one runs), so the first batch after the plan takes the fastest size
        measured so far."""
        for _, n, _ in self.plan:
            yield n
        while True:
            yield self.size or self._fastest_so_far()

    def _fastest_so_far(self) -> int:
        measured = [(t, n) for by_size in self.times.values() for n, t in by_size.items()]
        return min(measured)[1] if measured else max(n for _, n, _ in self.plan)

    def warm_up(self) -> None:
        """Trace TensorFlow's graph (if TensorFlow is timed) before other threads start: see ``LoadedModel.warm_up``."""
        if "tensorflow" in self.runtimes:
            with self._running("tensorflow"):
                self.model.warm_up()

    def run(self, batch: np.ndarray, step: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """``model.predict_batch_with_std(batch)`` for the run's batch number ``step`` (the n-th size
        :meth:`sizes` gave): on the runtime the plan names for it, timed if the plan says so and the batch is
        full. A call past the plan (or with no ``step``) runs on the runtime kept."""
        if step is None or step >= len(self.plan):
            self._finish()
            return self.model.predict_batch_with_std(batch)
        name, n, timed = self.plan[step]
        with self._running(name):
            start = time.perf_counter()
            out = self.model.predict_batch_with_std(batch)
            took = (time.perf_counter() - start) / len(batch)
        if timed and len(batch) == n:
            self.times[name][n] = min(self.times[name].get(n, float("inf")), took)
        if step == len(self.plan) - 1:
            self._finish()
        return out

    def run_blank(self, hw: tuple[int, int] = (256, 256)) -> None:
        """The whole plan on blank batches (for a caller with no slices at hand)."""
        hw = self.model.input_hw or hw
        for step, (_, n, _) in enumerate(self.plan):
            self.run(np.zeros((n, *hw, self.model.channels), np.float32), step)

    def _running(self, name: str) -> Any:
        from contextlib import contextmanager

        @contextmanager
        def swapped() -> Iterator[None]:
            model = self.model
            before = model.runtime_runner, model.runtime
            model.runtime_runner, model.runtime = self.runtimes[name], name
            try:
                yield
            finally:
                model.runtime_runner, model.runtime = before
        return swapped()

    def _finish(self) -> None:
        """Once, after the plan: remember what was measured and keep the faster runtime. A runtime without one
        full timed batch (a run that ended early) leaves everything as it was, and nothing is remembered."""
        if self._finished:
            return
        self._finished = True
        best = {name: min(by_size.values()) for name, by_size in self.times.items() if by_size}
        if len(best) < len(self.runtimes):
            return
        for name, by_size in self.times.items():
            with self._running(name):  # the cache key names the runtime
                _remember_sizes(self.cache, self.model, by_size)
        kept = next(iter(self.runtimes))
        if len(self.runtimes) > 1:
            keep = keeps_openvino(best)
            self.decision = keep, best
            _remember(self.cache, _choice_key(self.model), {k: round(v, 5) for k, v in best.items()})
            kept = "openvino" if keep else "tensorflow"
        self.model.runtime_runner, self.model.runtime = self.runtimes[kept], kept
        by_size = self.times[kept]
        self.size = min(by_size, key=by_size.get)


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
