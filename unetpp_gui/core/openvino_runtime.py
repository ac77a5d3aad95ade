"""OpenVINO as a second CPU runtime for inference (a default dependency; the app runs without it).

The network TensorFlow would run (pruned, batch norms folded, float32) is built once in OpenVINO's format and
cached on disk, keyed by the model file's content, the variant and the OpenVINO version, so a second start reads
it instead of building it again. It is built straight from the .h5 file without TensorFlow where
:mod:`~unetpp_gui.core.openvino_graph` covers the network (:func:`direct_conversion`: every network this project
trains), else converted by OpenVINO from the Keras network (:func:`attach`, TensorFlow loaded). Inference then calls
the compiled model in place of TensorFlow's graph, with the same head, activation and test-time
augmentation. Anything that goes wrong (OpenVINO absent, conversion or compilation failing) leaves the
model on TensorFlow: :func:`attach` returns why, and the caller says so.

Beside each converted model a small JSON file keeps what the engine needs to know about the network (input
size, outputs, head activation, parameters): with it, a later start that runs OpenVINO anyway
(:func:`cached_conversion`, :func:`attach_cached`) needs neither TensorFlow nor Keras.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import tempfile
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import numpy as np

RUNTIMES = ("auto", "tensorflow", "openvino")


def default_runtime() -> str:
    """The runtime used when none is chosen: ``UNETPP_RUNTIME`` if it names one, else "auto"."""
    value = os.environ.get("UNETPP_RUNTIME", "auto").strip().lower()
    return value if value in RUNTIMES else "auto"


def version() -> str | None:
    """The installed OpenVINO version, or None (the metadata is read; the package is not imported)."""
    try:
        from importlib.metadata import PackageNotFoundError, version as dist_version
    except ImportError:  # pragma: no cover
        return None
    try:
        return dist_version("openvino")
    except PackageNotFoundError:
        return None


def cache_folder() -> Path:
    from unetpp_gui.core.batching import cache_root

    return cache_root() / "openvino"


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:24]


def _key_parts(path: Path, prune_level: int | None) -> tuple[str, str]:
    """A conversion's file name before and after its "-o<output index>" part."""
    return f"{path.stem[:40]}-{_file_digest(path)}-L{prune_level or 0}", f"-ov{version()}"


def cache_key(path: Path, prune_level: int | None, output_index: int) -> str:
    head, tail = _key_parts(path, prune_level)
    return f"{head}-o{output_index}{tail}"


def _convert(network: Any, xml: Path) -> None:
    """Keras network -> OpenVINO IR at ``xml`` (written under a temporary name, then moved). OpenVINO traces the
    network itself: the SavedModel export it once went through took longer than the conversion (2.3-4.5 s of
    3.9-8.4 s for the bundled model, 2 cores; same probabilities within 3e-11)."""
    import warnings

    import openvino as ov

    with warnings.catch_warnings():  # Keras: a list given where the functional model names its input
        warnings.simplefilter("ignore", UserWarning)
        ov_model = ov.convert_model(network)
    save_network(ov_model, xml)


def save_network(ov_model: Any, xml: Path) -> None:
    """Write an OpenVINO model to ``xml`` and its .bin (under a temporary name, then moved)."""
    import openvino as ov

    xml.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".convert-", dir=xml.parent))
    try:
        ov.save_model(ov_model, str(work / xml.name), compress_to_fp16=False)
        os.replace(work / xml.with_suffix(".bin").name, xml.with_suffix(".bin"))
        os.replace(work / xml.name, xml)  # the .xml last: it marks a complete pair
    finally:
        shutil.rmtree(work, ignore_errors=True)


#: Static-shape compilations an :class:`OpenVinoRunner` keeps (batch sizes met: the measured ones, the chosen one,
#: a run's last partial batch, a single slice); older ones are dropped, a shape met again compiles again (~70 ms).
STATIC_SHAPES = 4


class OpenVinoRunner:
    """Calls a compiled OpenVINO model like ``LoadedModel._function``: batch -> (mean probabilities, TTA spread).

    The converted network has a free batch dimension. Compiled that way it ran 10-12 % slower per slice than
    compiled for one fixed input shape (bundled model, 2 cores, Intel Xeon with AMX: 17.1 vs 15.2 ms bfloat16,
    60.1 vs 54.8 ms float32, batch 1), so each input shape the runner meets is compiled for that shape once
    (about 70 ms) and kept (the last :data:`STATIC_SHAPES`); the free-shape compilation made at load time
    runs a shape whose own compilation failed.
    """

    def __init__(self, compiler: "_Compiler", output_index: int, activation: str | None, channel: int,
                 tta: bool) -> None:
        self.compiler, self.compiled = compiler, compiler.compile(None)  # fails here, at load time, if at all
        self.output_index = output_index
        self.activation, self.channel, self.tta = activation, channel, tta
        self._lock = threading.Lock()
        self._static: dict[tuple[int, ...], Any] = {}  # input shape -> compiled model, oldest first
        self._local = threading.local()

    def compiled_for(self, shape: tuple[int, ...]) -> Any:
        """The compilation that runs inputs of ``shape``: its own static one, made on first use."""
        with self._lock:
            compiled = self._static.pop(shape, None)
            if compiled is None:
                try:
                    compiled = self.compiler.compile(shape)
                except Exception:  # this shape runs on the free-shape compilation
                    compiled = self.compiled
            self._static[shape] = compiled  # now the newest
            while len(self._static) > STATIC_SHAPES:
                del self._static[next(iter(self._static))]
            return compiled

    def _request(self, shape: tuple[int, ...]) -> Any:
        """This thread's own infer request for ``shape``: one request used by two threads at once aborts the
        process ("Infer Request is busy"), and the GUI may predict a batch and a single slice together."""
        compiled = self.compiled_for(shape)
        requests = getattr(self._local, "requests", None)
        if requests is None:
            requests = self._local.requests = {}
        held = requests.get(shape)
        if held is None or held[0] is not compiled:
            held = requests[shape] = (compiled, compiled.create_infer_request())
            for other in [s for s, (c, _) in requests.items() if self._static.get(s) is not c]:
                del requests[other]  # a dropped compilation's request: let it (and the compilation) go
        return held[1]

    def _prob(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, np.float32)
        result = self._request(x.shape).infer(x)  # outputs copied, not shared
        y = np.asarray(result[self.output_index], np.float32)
        if self.activation == "sigmoid":
            y = 1.0 / (1.0 + np.exp(-y))
        elif self.activation == "softmax":
            e = np.exp(y - y.max(axis=-1, keepdims=True))
            y = e / e.sum(axis=-1, keepdims=True)
        return y[..., self.channel]

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not self.tta:
            return self._prob(x), np.zeros((0,), np.float32)
        n = x.shape[0]
        both = self._prob(np.concatenate([x, x[:, :, ::-1]], axis=0))
        a, b = both[:n], both[n:, :, ::-1]
        return (a + b) / 2.0, np.abs(a - b) / 2.0


#: What :class:`~unetpp_gui.core.model_io.LoadedModel` needs to know about a network, kept beside its conversion.
NETWORK_FACTS = ("input_hw", "channels", "n_outputs", "output_index", "output_channels", "apply_activation",
                 "n_params", "prune_levels", "folded_batch_norms")


def _facts_path(xml: Path) -> Path:
    return xml.with_suffix(".json")


def sound_facts(facts: Any) -> dict[str, Any] | None:
    """Network facts read back from JSON as :class:`~unetpp_gui.core.model_io.LoadedModel` takes them (tuples
    restored), or None if ``facts`` is not a complete, well-formed set."""
    if not (isinstance(facts, dict) and set(NETWORK_FACTS) <= set(facts) and isinstance(facts["n_outputs"], int)):
        return None
    sound = {name: facts[name] for name in NETWORK_FACTS}
    try:
        sound["input_hw"] = tuple(sound["input_hw"]) if sound["input_hw"] else None
        sound["prune_levels"] = tuple(sound["prune_levels"])
    except TypeError:
        return None
    return sound


def _read_facts(file: Path) -> dict[str, Any] | None:
    """The network facts in ``file`` (:func:`sound_facts`), or None if it is missing, damaged or incomplete."""
    try:
        return sound_facts(json.loads(file.read_text()))
    except (OSError, ValueError):
        return None


def _write_facts(xml: Path, model: Any) -> bool:
    """Record ``model``'s network facts beside its conversion (unless sound ones are there; a read-only cache only
    loses the fast start). Whether sound facts are there now."""
    from unetpp_gui.core.atomic import atomic_write_bytes

    target = _facts_path(xml)
    if _read_facts(target) is not None:
        return True
    facts = {name: getattr(model, name) for name in NETWORK_FACTS}
    try:
        atomic_write_bytes(target, json.dumps(facts, indent=1).encode())
    except OSError:
        return False
    return True


def cached_conversion(path: Path, prune_level: int | None, output_index: int,
                      cache: Path | None = None) -> tuple[Path, dict[str, Any]] | None:
    """The converted model (.xml) of this model file and variant and its network facts, or None if no earlier
    start left both. ``output_index`` as ``load_model`` takes it (negative counts from the end)."""
    if version() is None:
        return None
    folder = cache or cache_folder()
    head, tail = _key_parts(path, prune_level)
    for facts_file in sorted(folder.glob(f"{glob.escape(head)}-o*{glob.escape(tail)}.json")):
        facts = _read_facts(facts_file)
        if facts is None:
            continue
        wanted = output_index if output_index >= 0 else facts["n_outputs"] + output_index
        xml = facts_file.with_suffix(".xml")
        if facts["output_index"] == wanted and xml.exists() and xml.with_suffix(".bin").exists():
            return xml, facts
    return None


def direct_conversion(path: Path, prune_level: int | None, output_index: int,
                      cache: Path | None = None) -> tuple[Path, dict[str, Any]] | None:
    """Build this model file's network for OpenVINO without TensorFlow (:mod:`~unetpp_gui.core.openvino_graph`)
    and keep it in the cache as a conversion; (.xml, network facts) as :func:`cached_conversion` gives them, or
    None where the direct build does not cover the network (the Keras conversion then runs) or OpenVINO is absent.
    Same file, same key: whichever way made the cached copy, later starts read it."""
    if version() is None:
        return None
    from unetpp_gui.core.openvino_graph import build

    try:
        network, facts = build(path, prune_level)
    except Exception:  # Unsupported, a config it misreads, OpenVINO refusing the graph: Keras converts it instead
        return None
    facts = select_output(facts, output_index)
    if facts is None:
        return None  # the normal load says what is wrong
    xml = (cache or cache_folder()) / f"{cache_key(path, prune_level, facts['output_index'])}.xml"
    try:
        save_network(network, xml)
    except (OSError, RuntimeError):
        return None
    return (xml, facts) if _write_facts(xml, SimpleNamespace(**facts)) else None


def select_output(facts: dict[str, Any], output_index: int) -> dict[str, Any] | None:
    """:func:`~unetpp_gui.core.openvino_graph.build`'s facts (per output) for the one output used, or None if there
    is no such output."""
    wanted = output_index if output_index >= 0 else facts["n_outputs"] + output_index
    if not 0 <= wanted < facts["n_outputs"]:
        return None
    return {**facts, "output_index": wanted, "output_channels": facts["output_channels"][wanted],
            "apply_activation": facts["apply_activation"][wanted]}


class _Compiler:
    """Compiles one converted network for the CPU, for a free or a fixed input shape."""

    def __init__(self, xml: Path, precision: str) -> None:
        import openvino as ov

        self.core = ov.Core()
        self.network = self.core.read_model(str(xml))
        self.config = {"INFERENCE_PRECISION_HINT": "bf16" if precision == "bfloat16" else "f32",
                       "PERFORMANCE_HINT": "LATENCY"}

    def compile(self, shape: tuple[int, ...] | None) -> Any:
        network = self.network
        if shape is not None:
            network = network.clone()
            network.reshape(list(shape))
        return self.core.compile_model(network, "CPU", self.config)


def _runner(model: Any, xml: Path) -> OpenVinoRunner:
    """``model``'s network on the conversion ``xml``, compiled (raises if OpenVINO cannot run it)."""
    channel = 1 if model.output_channels == 2 else 0
    return OpenVinoRunner(_Compiler(xml, model.precision), model.output_index, model.apply_activation, channel,
                          model.tta)


def _failure(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"OpenVINO could not run this model ({text[:200]})"


def _use(model: Any, runner: OpenVinoRunner, note: str) -> None:
    model.runtime_runner = runner
    model.runtime = "openvino"
    model.runtime_note = f"OpenVINO {version()} ({note})"


def attach(model: Any, network: Callable[[], Any], cache: Path | None = None) -> str | None:
    """Make ``model`` (a LoadedModel) run its float32 runtime network with OpenVINO; ``network`` builds that
    network and is called only when the model has no converted copy in the cache yet.

    Returns None on success, else the reason it stays on TensorFlow. Precision follows the model's:
    float32 compute unless the model was loaded in bfloat16.
    """
    if version() is None:
        return "OpenVINO is not installed (pip install openvino)"
    try:
        xml = (cache or cache_folder()) / f"{cache_key(model.path, model.prune_level, model.output_index)}.xml"
        converted = xml.exists() and xml.with_suffix(".bin").exists()
        if not converted:
            _convert(network(), xml)
        runner = _runner(model, xml)
    except Exception as exc:  # any failure: TensorFlow runs it
        return _failure(exc)
    _write_facts(xml, model)
    _use(model, runner, f"{'cached' if converted else 'converted'} {xml.name}")
    return None


def attach_cached(model: Any, xml: Path, how: str = "cached") -> str | None:
    """Run ``model`` (a LoadedModel built from :func:`cached_conversion`'s or :func:`direct_conversion`'s facts,
    without TensorFlow) on the conversion ``xml`` (``how`` it came: "cached", "built"); None on success, else why
    not."""
    try:
        runner = _runner(model, xml)
    except Exception as exc:  # the caller falls back to the normal load
        return _failure(exc)
    _use(model, runner, f"{how} {xml.name}; TensorFlow not loaded")
    return None
