"""Loading segmentation models safely and describing what they expect and produce."""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import numpy as np

from unetpp_gui.core.context import SliceContext
from unetpp_gui.core.errors import ModelError
from unetpp_gui.core.fold import fold_batch_norm
from unetpp_gui.core.metadata import ModelMetadata, read_metadata
from unetpp_gui.core.normalize import ChannelNorm

if TYPE_CHECKING:
    from unetpp_gui.core.consistency import PatientFilter

MODEL_SUFFIXES = (".h5", ".hdf5", ".keras")


def _parse_config(path: Path, raw: Any) -> dict[str, Any]:
    """The architecture JSON, or a ModelError that says what is wrong with it."""
    try:
        if isinstance(raw, bytes):
            raw = raw.decode("utf-8")
        config = json.loads(raw)
    except RecursionError:
        raise ModelError(f"{path.name}: its architecture description is nested too deeply to be a model.") from None
    except (ValueError, TypeError):
        raise ModelError(f"{path.name}: its architecture description (model_config) is not valid JSON; "
                         "the file is corrupt or was not written by Keras.") from None
    if not isinstance(config, dict) or "class_name" not in config:
        raise ModelError(f"{path.name}: its architecture description is not a Keras model.")
    return config


def _read_config(path: Path) -> dict[str, Any]:
    """The architecture JSON of a model file, without building the model."""
    suffix = path.suffix.lower()
    if suffix in (".h5", ".hdf5"):
        import h5py

        try:
            with h5py.File(path, "r") as f:
                raw = f.attrs.get("model_config")
                weights_only = "layer_names" in f.attrs or "model_weights" in f or "layers" in f
        except OSError:
            raise ModelError(f"{path.name} is not an HDF5 model file (it may be corrupt or truncated).") from None
        if raw is None:
            if weights_only:
                raise ModelError(
                    f"{path.name} holds weights only, no architecture; save the model with model.save(), "
                    "not model.save_weights()."
                )
            raise ModelError(f"{path.name} is an HDF5 file but holds no Keras model (no model_config).")
        return _parse_config(path, raw)
    if suffix == ".keras":
        try:
            with zipfile.ZipFile(path) as zf:
                raw = zf.read("config.json")
        except (zipfile.BadZipFile, KeyError, OSError, ValueError, EOFError):
            raise ModelError(f"{path.name} is not a Keras model archive (it may be corrupt).") from None
        return _parse_config(path, raw)
    raise ModelError(f"{path.name}: unsupported model format; use a Keras .h5 or .keras file.")


def _layers(config: Any) -> Iterator[dict[str, Any]]:
    """Every layer description in a (possibly nested) model config."""
    if isinstance(config, dict):
        if "class_name" in config and isinstance(config.get("config"), dict):
            yield config
        for value in config.values():
            yield from _layers(value)
    elif isinstance(config, list):
        for value in config:
            yield from _layers(value)


def unsafe_layers(config: dict[str, Any]) -> list[str]:
    """Names of layers that would run code stored in the file (Lambda layers)."""
    found = []
    for layer in _layers(config):
        if layer["class_name"] in ("Lambda", "TFOpLambda", "SlicingOpLambda") or "function" in layer["config"]:
            name = layer["config"].get("name", "?")
            found.append(f"{name} ({layer['class_name']})")
    return found


@dataclass
class LoadedModel:
    """A Keras model plus what the engine needs to feed it and read it."""

    path: Path
    keras_model: Any  # None when started without TensorFlow (OpenVINO's cached conversion): see network()
    metadata: ModelMetadata
    input_hw: tuple[int, int] | None  # None: any size (multiples of 16 are used)
    channels: int
    output_index: int
    n_outputs: int
    output_channels: int
    apply_activation: str | None  # "sigmoid" / "softmax" when the head outputs logits
    n_params: int
    prune_level: int | None = None  # UNet++ cut at level L (deep-supervision models only)
    prune_levels: tuple[int, ...] = ()  # levels this file supports
    tta: bool = False  # test-time augmentation: mean of the slice and its left-right mirror
    precision: str = "float32"  # "float32", "bfloat16" (mixed: bfloat16 compute, float32 weights) or "int8"
    runtime_model: Any = None  # what inference runs: keras_model rewritten for speed (same function)
    folded_batch_norms: int = 0  # batch norms folded into their convolutions in runtime_model
    batch_size_choice: int | None = None  # measured fastest batch size here (core.batching), when asked
    batch_size_note: str = ""
    runtime: str = "tensorflow"  # what runs inference: "tensorflow" or "openvino" (core.openvino_runtime)
    runtime_note: str = ""  # the runtime's version and cache file, or why the one asked for is not used
    precision_note: str = ""  # why the precision asked for does not run ("int8 not used: …; float32 instead")
    runtime_runner: Any = None  # OpenVINO's compiled model, called in place of TensorFlow's graph
    openvino_pending: bool = False  # "auto" left OpenVINO's conversion and measurement for later (finish_openvino)
    runtimes_unmeasured: bool = False  # "auto" converted but left the measurement to a run (batching.Trial)
    _functions: dict[tuple[int, int, bool], Callable[..., Any]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        ctx = self.context
        if self.image_channels not in (1, 3):
            raise ModelError(f"{self.path.name} expects {self.channels} input channels; need 1 or 3 channels"
                             + (f" plus {ctx.extra_channels} of neighbouring slices ({ctx.describe()})" if ctx else "")
                             + ".")
        if ctx is not None and ctx.channel >= self.image_channels:
            raise ModelError(f"{self.path.name}: its neighbouring slices' channel {ctx.channel} does not exist "
                             f"in a {self.image_channels}-channel slice.")

    @cached_property
    def context(self) -> SliceContext | None:
        """The neighbouring slices the model reads beside each slice (None: a plain 2-D model)."""
        try:
            return SliceContext.from_dict(self.metadata.input_context)
        except (TypeError, ValueError, KeyError) as exc:
            raise ModelError(f"{self.path.name}: unreadable input_context in its metadata ({exc}).") from None

    @property
    def image_channels(self) -> int:
        """Channels of the slice itself (the input's, less the neighbours')."""
        return self.channels - (self.context.extra_channels if self.context else 0)

    @cached_property
    def normalization(self) -> ChannelNorm | None:
        """The intensity normalisation stored with the model (None for plain scaling); parsed once."""
        return ChannelNorm.from_dict(self.metadata.input_normalization)

    @cached_property
    def patient_filter(self) -> "PatientFilter | None":
        """The patient-level 3-D filter the model's metadata switches on (None: off)."""
        from unetpp_gui.core.consistency import PatientFilter

        try:
            return PatientFilter.from_dict(self.metadata.patient_filter)
        except (TypeError, ValueError):
            return None

    @property
    def name(self) -> str:
        return self.metadata.name or self.path.stem

    def network(self) -> Any:
        """The Keras network as in the file (pruned if asked); a model started without TensorFlow loads it now
        (seconds: TensorFlow's import and the rebuild), so call it off the GUI thread."""
        if self.keras_model is None:
            self.keras_model, _ = _load_keras(self.path, False, self.prune_level)
        return self.keras_model

    def take_runtime(self, other: "LoadedModel") -> None:
        """Run from now on as ``other`` (a :func:`finish_openvino` copy of this model) runs: its runtime and
        batch size. Predictions under way finish on whichever runtime their next batch finds (same masks)."""
        self.batch_size_choice, self.batch_size_note = other.batch_size_choice, other.batch_size_note
        self.runtime_note, self.runtime = other.runtime_note, other.runtime
        self.runtime_runner, self.openvino_pending = other.runtime_runner, False

    def summary(self) -> dict[str, Any]:
        return {
            "file": str(self.path),
            "name": self.name,
            "input": [None, *(self.input_hw or (None, None)), self.channels],
            "outputs": self.n_outputs,
            "output_used": self.output_index,
            "output_channels": self.output_channels,
            "parameters": self.n_params,
            "input_scale": self.metadata.input_scale,
            "input_normalization": self.metadata.input_normalization.get("method", "none"),
            "input_context": self.context.describe() if self.context else "none",
            "pixel_threshold": self.metadata.pixel_threshold,
            "decision_threshold": self.metadata.decision_threshold,
            "patient_filter": self.patient_filter.describe() if self.patient_filter else "off",
            "metadata_in_file": self.metadata.from_file,
            "precision": self.precision,
            "runtime": self.runtime,
            "runtime_note": self.runtime_note,
            "precision_note": self.precision_note,
            "folded_batch_norms": self.folded_batch_norms,
        }

    def _function(self, hw: tuple[int, int]) -> Callable[..., Any]:
        if self.runtime_runner is not None:
            return self.runtime_runner
        key = (hw[0], hw[1], self.tta)
        fn = self._functions.get(key)
        if fn is None:
            import tensorflow as tf

            model = self.runtime_model if self.runtime_model is not None else self.keras_model
            index, act, tta = self.output_index, self.apply_activation, self.tta
            multi = self.n_outputs > 1
            channel = 1 if self.output_channels == 2 else 0

            def prob(x):
                y = model(x, training=False)
                if multi:
                    y = y[index]
                y = tf.cast(y, tf.float32)
                if act == "sigmoid":
                    y = tf.sigmoid(y)
                elif act == "softmax":
                    y = tf.nn.softmax(y, axis=-1)
                return y[..., channel]

            @tf.function(input_signature=[tf.TensorSpec([None, hw[0], hw[1], self.channels], tf.float32)],
                         autograph=False)
            def run(x):  # one traced graph per input size
                if not tta:
                    return prob(x), tf.zeros([0], tf.float32)
                n = tf.shape(x)[0]
                both = prob(tf.concat([x, tf.reverse(x, axis=[2])], axis=0))
                a, b = both[:n], tf.reverse(both[n:], axis=[2])
                return (a + b) / 2.0, tf.abs(a - b) / 2.0  # mean and std of the two passes

            fn = self._functions[key] = run
        return fn

    def warm_up(self) -> None:
        """Trace the inference graph for the model's input size now, if not done yet.

        Call it before other threads start working for this model (the prediction's decode thread): the
        first trace of a TensorFlow function running beside them was seen to hang or crash the process
        inside TensorFlow's graph building. Any-size models trace per size when they meet it.
        """
        if self.input_hw is None or self.runtime_runner is not None:
            return
        if (self.input_hw[0], self.input_hw[1], self.tta) not in self._functions:
            self.predict_batch(np.zeros((1, *self.input_hw, self.channels), np.float32))

    def predict_batch(self, batch: np.ndarray) -> np.ndarray:
        """Probabilities (B, h, w) float32 for a preprocessed batch (B, h, w, C) float32."""
        mean, _ = self._function((int(batch.shape[1]), int(batch.shape[2])))(batch)
        return np.asarray(mean)

    def predict_batch_with_std(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Mean probabilities and, with ``tta``, their standard deviation over the passes."""
        mean, std = self._function((int(batch.shape[1]), int(batch.shape[2])))(batch)
        return np.asarray(mean), (np.asarray(std) if self.tta else None)


def _head_activation(keras_model: Any, output_index: int) -> str | None:
    """'sigmoid'/'softmax' to apply if the output layer emits logits, else None."""
    try:
        tensor = keras_model.outputs[output_index]
        layer = tensor._keras_history[0]
        act = layer.get_config().get("activation")
    except (AttributeError, IndexError):
        return None
    if act in (None, "linear"):
        channels = keras_model.outputs[output_index].shape[-1]
        return "softmax" if channels == 2 else "sigmoid"
    return None


def load_model(path: str | Path, trust: bool = False, output_index: int = -1,
               prune_level: int | None = None, tta: bool = False, precision: str = "float32",
               runtime: str = "tensorflow", defer_openvino: bool = False, measure_on_run: bool = False) -> LoadedModel:
    """Load a segmentation model for inference (never compiles, never trains).

    Refuses files that would run stored code (Lambda layers) unless ``trust`` is set, and
    anything that is not an image-to-mask network. Every refusal is a :class:`ModelError`.
    ``prune_level`` cuts a deep-supervision UNet++ at level L (only nodes X_i_j with i + j <= L
    run); ``tta`` averages each slice with its left-right mirror and reports their spread.
    ``precision`` "bfloat16" computes in mixed bfloat16 (faster on CPUs with native bfloat16), "auto" does
    so only on such CPUs; a model that cannot be rebuilt that way stays float32. "int8" runs the quantized network
    kept beside the file (:mod:`~unetpp_gui.core.quantized`; full network, OpenVINO), else float32 with the
    reason in ``precision_note``.
    ``keras_model`` is the network as in the file (pruned if asked); inference runs ``runtime_model``,
    the same function with batch norms folded into their convolutions and the chosen precision.
    ``runtime`` "openvino" runs that network with OpenVINO (built from the file without TensorFlow where
    :mod:`~unetpp_gui.core.openvino_graph` covers it, else converted through Keras; cached). "auto" does so
    where OpenVINO is installed, unless an earlier start here measured it more than 5 % slower
    (:func:`~unetpp_gui.core.batching.keeps_openvino`); TensorFlow is timed against it only where TensorFlow is
    loaded anyway (a network only Keras converts). Either falls back to TensorFlow, saying why in
    ``runtime_note``. A start that runs OpenVINO built or cached that way does not import TensorFlow
    (``keras_model`` is None until :meth:`LoadedModel.network`).
    ``defer_openvino`` (with "auto" only; a network only Keras converts): where this model was never measured
    here, start on TensorFlow without converting and set ``openvino_pending``; :func:`finish_openvino` converts
    and measures later.
    ``measure_on_run`` (with "auto" only; a network only Keras converts): where this model was never measured
    here, convert, start on OpenVINO and set ``runtimes_unmeasured``: the caller measures both runtimes on its
    first slices (:class:`~unetpp_gui.core.batching.Trial` with :func:`~unetpp_gui.core.batching.runtimes_of`).
    """
    path = Path(path)
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    from unetpp_gui.core.openvino_runtime import RUNTIMES

    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {RUNTIMES}, not {runtime!r}")
    unsafe = _check_file(path, trust)
    if precision == "int8":
        int8 = _load_int8(path, output_index, prune_level, tta, runtime, unsafe)
        if isinstance(int8, LoadedModel):
            return int8
        model = load_model(path, trust, output_index, prune_level, tta, "float32", runtime, defer_openvino,
                           measure_on_run)
        model.precision_note = f"int8 not used: {int8}; float32 instead"
        return model
    if runtime != "tensorflow" and not unsafe:
        fast = _load_without_tensorflow(path, output_index, prune_level, tta, precision, runtime == "openvino")
        if fast is not None:
            return fast
    model, levels = _load_keras(path, trust, prune_level)
    if prune_level is not None:
        output_index = -1
    run, folded, used = model, 0, "float32"
    if not unsafe:  # a model with stored code is never rebuilt from its config
        if precision == "bfloat16" or (precision == "auto" and cpu_supports_bf16()):
            run, folded = fold_batch_norm(model, "mixed_bfloat16")  # folded and bfloat16 in one rebuild
            if run is model:  # nothing folded: a bfloat16 copy as it is
                run = _bfloat16_copy(model) or model
            used = "bfloat16" if run is not model else "float32"
        if used == "float32":
            run, folded = fold_batch_norm(model)

    def float32_network() -> Any:
        """The float32 network OpenVINO converts from: built only where a conversion is needed."""
        if unsafe or used == "float32":
            return run
        return fold_batch_norm(model)[0]
    hw, channels, idx, out_channels = _check_io(model, path, output_index)
    loaded = LoadedModel(
        path=path,
        keras_model=model,
        metadata=read_metadata(path),
        input_hw=hw,
        channels=channels,
        output_index=idx,
        n_outputs=len(model.outputs),
        output_channels=out_channels,
        apply_activation=_head_activation(model, idx),
        n_params=int(model.count_params()),
        prune_level=prune_level,
        prune_levels=levels if len(levels) > 1 else (),
        tta=tta,
        precision=used,
        runtime_model=run,
        folded_batch_norms=folded,
    )
    if runtime != "tensorflow":
        _try_openvino(loaded, float32_network, unsafe, explicit=runtime == "openvino", defer=defer_openvino,
                      measure_on_run=measure_on_run)
    return loaded


def _load_int8(path: Path, output_index: int, prune_level: int | None, tta: bool, runtime: str,
               unsafe: list[str]) -> LoadedModel | str:
    """The model on the int8 network beside its file (:mod:`~unetpp_gui.core.quantized`; OpenVINO, TensorFlow
    never imported), or why not."""
    from unetpp_gui.core import openvino_runtime, quantized

    if runtime == "tensorflow":
        return "int8 runs on OpenVINO and TensorFlow was asked for"
    if prune_level is not None:
        return "the int8 network is the full network and a pruned one was asked for"
    if unsafe:
        return "a model with stored code does not run from a network beside it"
    found = quantized.find(path)
    if isinstance(found, str):
        return found
    xml, facts = found
    if output_index not in (-1, facts["output_index"], facts["output_index"] - facts["n_outputs"]):
        return f"the int8 network gives output {facts['output_index']}, not {output_index}"
    model = LoadedModel(path=path, keras_model=None, metadata=read_metadata(path), prune_level=None, tta=tta,
                        precision="int8", **facts)
    return openvino_runtime.attach_cached(model, xml, "int8") or model


def _load_without_tensorflow(path: Path, output_index: int, prune_level: int | None, tta: bool, precision: str,
                             explicit: bool) -> LoadedModel | None:
    """The model on OpenVINO, TensorFlow and Keras never imported: its conversion read from the cache, or built
    from the file directly (:func:`~unetpp_gui.core.openvino_runtime.direct_conversion`, well under a second)
    and cached. For a start asked to run OpenVINO, and for "auto" unless an earlier start here measured
    TensorFlow faster for this model. It skips TensorFlow's import and the Keras rebuild (3-7 s of a start on 2
    cores). None where that is not possible (a network the direct build does not cover and no cached
    conversion); the normal load runs then."""
    from types import SimpleNamespace

    from unetpp_gui.core import openvino_runtime
    from unetpp_gui.core.batching import cached_runtime_choice, describe_runtimes

    bf16 = precision == "bfloat16" or (precision == "auto" and cpu_supports_bf16())
    variant = dict(path=path, prune_level=prune_level, tta=tta, precision="bfloat16" if bf16 else "float32")
    # the cached choice first (what its key needs is known now): where TensorFlow won, the file is not hashed
    known = None if explicit else cached_runtime_choice(SimpleNamespace(**variant))
    if known is not None and not known[0]:
        return None  # TensorFlow measured faster here: the normal load keeps it
    index = -1 if prune_level is not None else output_index
    model = None
    for how in ("cached", "built"):  # a cached copy OpenVINO cannot read (damaged) is built again
        found = (openvino_runtime.cached_conversion if how == "cached" else openvino_runtime.direct_conversion)(
            path, prune_level, index)
        if found is not None:
            model = LoadedModel(keras_model=None, metadata=read_metadata(path), **variant, **found[1])
            if openvino_runtime.attach_cached(model, found[0], how) is None:
                break
            model = None
    if model is None:
        return None
    if known is not None:
        model.runtime_note += f"; {describe_runtimes(known[1], True)}"
    elif not explicit:
        model.runtime_note += f"; {UNTIMED_NOTE}"
    return model


def _check_file(path: Path, trust: bool) -> list[str]:
    """Refuse what is not a model file, or one that would run stored code unless trusted; returns the
    names of such code-running layers (empty for a normal model)."""
    if not path.exists():
        raise ModelError(f"Model file not found: {path}")
    if path.is_dir():
        raise ModelError(f"{path} is a folder; choose a .h5 or .keras model file.")
    if not path.is_file():
        raise ModelError(f"{path} is not a regular file (a FIFO, device or socket); choose a model file.")
    config = _read_config(path)
    try:
        unsafe = unsafe_layers(config)
    except RecursionError:
        raise ModelError(f"{path.name}: its architecture description is nested too deeply to be a model.") from None
    if unsafe and not trust:
        raise ModelError(
            f"{path.name} contains layers that run code stored in the file ({', '.join(unsafe[:3])}). "
            "It was not loaded. Open it only if you trust its source (--trust-model)."
        )
    return unsafe


def _load_keras(path: Path, trust: bool, prune_level: int | None) -> tuple[Any, tuple[int, ...]]:
    """The Keras network in the file (cut at ``prune_level`` if given) and the deep-supervision levels it has."""
    from unetpp_gui.core.quiet import import_tensorflow

    import_tensorflow()
    import keras

    try:
        model = keras.models.load_model(path, compile=False, safe_mode=not trust)
    except Exception as exc:  # Keras raises many types; the user needs one sentence.
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{path.name} could not be loaded as a Keras model: {msg[:300]}") from None

    levels = tuple(sorted(int(l.name.rsplit("_", 1)[1]) for l in model.layers
                          if l.name.startswith("head_X_0_")))
    if prune_level is not None:
        if prune_level not in levels or len(levels) < 2:
            raise ModelError(f"{path.name} cannot be pruned to level {prune_level}: pruning needs a "
                             f"deep-supervision UNet++ (heads found: {list(levels) or 'none'}).")
        model = prune_model(model, prune_level)
    return model, levels


def _check_io(model: Any, path: Path, output_index: int) -> tuple[tuple[int, int] | None, int, int, int]:
    """(input size or None, input channels, the output used, its channels) of an image-to-mask network."""
    inputs = model.inputs
    if len(inputs) != 1:
        raise ModelError(f"{path.name} has {len(inputs)} inputs; a segmentation model has one image input.")
    shape = tuple(inputs[0].shape)
    if len(shape) != 4 or shape[-1] is None:
        raise ModelError(f"{path.name} expects input {shape}; need (batch, height, width, 1 or 3 channels).")
    h, w, c = shape[1], shape[2], int(shape[3])
    input_hw = (int(h), int(w)) if h is not None and w is not None else None
    outputs = model.outputs
    n_out = len(outputs)
    idx = output_index if output_index >= 0 else n_out + output_index
    if not 0 <= idx < n_out:
        raise ModelError(f"{path.name} has {n_out} outputs; output {output_index} does not exist.")
    oshape = tuple(outputs[idx].shape)
    if len(oshape) != 4 or oshape[-1] not in (1, 2):
        raise ModelError(
            f"{path.name} output {oshape} is not a segmentation map (need 1 sigmoid or 2 softmax channels)."
        )
    return input_hw, c, idx, int(oshape[-1])


def _try_openvino(model: LoadedModel, network: Callable[[], Any], unsafe: list[str], explicit: bool,
                  defer: bool = False, measure_on_run: bool = False) -> None:
    """Run the network ``network()`` builds (called only if a conversion is needed) with OpenVINO where it
    can; otherwise TensorFlow runs it, and the note says why (for "auto" only when OpenVINO is installed: not
    having it is the normal case). With "auto" OpenVINO is kept unless it measured more than 5 % slower than
    TensorFlow for this model on this machine (cached); where an earlier start's measurement chose TensorFlow, OpenVINO is not
    even loaded."""
    from unetpp_gui.core import openvino_runtime
    from unetpp_gui.core.batching import cached_runtime_choice, describe_runtimes, keep_openvino

    known = None if explicit or unsafe else cached_runtime_choice(model)
    if known is not None and not known[0]:  # measured before: TensorFlow wins here, OpenVINO stays unloaded
        model.runtime_note = f"TensorFlow: {describe_runtimes(known[1], True)}"
        return
    if defer and not explicit and known is None and not unsafe and openvino_runtime.version() is not None:
        model.openvino_pending = True
        model.runtime_note = f"TensorFlow: {DEFERRED_NOTE}"
        return
    if unsafe:
        why: str | None = "OpenVINO does not run models with stored code"
    else:
        why = openvino_runtime.attach(model, network)
    if why is not None:
        if explicit or openvino_runtime.version() is not None:
            model.runtime_note = f"TensorFlow: {why}"
        return
    if explicit:
        return
    if known is None and measure_on_run:
        model.runtimes_unmeasured = True
        model.runtime_note += f"; {UNMEASURED_NOTE}"
        return
    keep, times = known if known is not None else keep_openvino(model)  # the cache is read once per start
    settle_runtime(model, keep, times, cached=known is not None)


def settle_runtime(model: LoadedModel, keep: bool, times: dict[str, float], cached: bool) -> None:
    """Leave ``model`` (loaded on OpenVINO by "auto") on OpenVINO if ``keep``, else on TensorFlow, and say in its
    note what was measured (``times``: seconds per slice by runtime)."""
    from unetpp_gui.core.batching import describe_runtimes

    model.runtimes_unmeasured = False
    if keep:
        model.runtime_note = (model.runtime_note.removesuffix(f"; {UNMEASURED_NOTE}")
                              + f"; {describe_runtimes(times, cached)}")
    else:
        model.runtime_runner, model.runtime = None, "tensorflow"
        model.runtime_note = f"TensorFlow: {describe_runtimes(times, cached)}"


#: The runtime note's end for a model whose runtimes a run measures on its first slices.
UNMEASURED_NOTE = "OpenVINO and TensorFlow are timed on the first slices here, then the faster one runs"

#: The runtime note's end where "auto" runs OpenVINO without timing TensorFlow (see README, "Runtimes").
UNTIMED_NOTE = ("TensorFlow not timed: OpenVINO ran at 0.98-1.45x its speed on the four CPU types measured, and a "
                "start without TensorFlow is seconds shorter")

#: The runtime note of a model whose OpenVINO conversion and measurement were deferred.
DEFERRED_NOTE = "OpenVINO not yet converted and measured for this model on this machine"


def finish_openvino(model: LoadedModel, failed: str | None = None) -> LoadedModel:
    """For a model loaded with ``defer_openvino`` whose conversion is now in the cache (converted by another
    process: :mod:`unetpp_gui.core.openvino_child`): measure both runtimes as "auto" does and return a copy that
    runs the one it keeps, with the batch size measured for it (the viewer measures none before); ``model``
    itself is not touched, so predictions running on it meanwhile are undisturbed (adopt the copy with
    :meth:`LoadedModel.take_runtime`). ``failed``: why the conversion could not be made; the copy stays on
    TensorFlow and says so. Seconds of work: call it off the GUI thread."""
    import copy

    from unetpp_gui.core.batching import best_batch_size, describe

    prepared = copy.copy(model)
    prepared._functions = dict(model._functions)
    prepared.openvino_pending = False
    if failed is not None:
        prepared.runtime_note = f"TensorFlow: {failed}"
    else:
        def missing() -> Any:  # converting here would hold the interpreter lock for seconds beside the GUI
            raise ModelError("the conversion is not in the cache")
        _try_openvino(prepared, missing, [], explicit=False)
    if prepared.input_hw is not None:  # measured with both runtimes above (cached), or on TensorFlow now
        size, times, cached = best_batch_size(prepared)
        prepared.batch_size_choice, prepared.batch_size_note = size, describe(size, times, cached)
    return prepared


PRECISIONS = ("float32", "bfloat16", "auto", "int8")


def prune_model(model: Any, level: int) -> Any:
    """UNet++ cut at level L (1..depth-1): keeps only nodes X_i_j with i + j <= L.

    Needs a deep-supervision model (it has a head on X_0_L). The result is a normal model that shares
    the weights and is saved and loaded like any other.
    """
    import keras

    head = f"head_X_0_{level}"
    try:
        out = model.get_layer(head).output
    except ValueError:
        raise ModelError(f"model has no {head}; pruning needs a deep-supervision UNet++") from None
    return keras.Model(model.inputs, out, name=f"{model.name}_L{level}")


#: oneDNN's instruction-set caps (ONEDNN_MAX_CPU_ISA) below AVX-512: TensorFlow's kernels then run as on an
#: AVX2-only CPU, so the app must not count on AVX-512 or native bfloat16 either.
_BELOW_AVX512 = {"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2"}


def isa_cap() -> str | None:
    """The instruction-set cap oneDNN honours (ONEDNN_MAX_CPU_ISA, or its former name DNNL_MAX_CPU_ISA), if any."""
    value = os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA")
    return value.strip().upper() if value and value.strip().upper() != "ALL" else None


def cpu_info(source: Path = Path("/proc/cpuinfo")) -> tuple[str, frozenset[str]]:
    """This CPU's model name and the feature flags its math libraries may use: /proc/cpuinfo's (Linux; ("CPU", no
    flags) elsewhere), less AVX-512 and AMX under an :func:`isa_cap` below AVX-512."""
    model, flags = _read_cpuinfo(source)
    if isa_cap() in _BELOW_AVX512:
        flags = frozenset(f for f in flags if not f.startswith(("avx512", "amx")))
    return model, flags


@lru_cache(maxsize=4)
def _read_cpuinfo(source: Path) -> tuple[str, frozenset[str]]:
    model, flags = "CPU", frozenset()
    try:
        lines = source.read_text().splitlines()
    except OSError:
        return model, flags
    for line in lines:
        key, _, value = line.partition(":")
        if key.strip() == "model name" and model == "CPU":
            model = value.strip()
        elif key.strip() == "flags" and not flags:
            flags = frozenset(value.split())
    return model, flags


def cpu_supports_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX)."""
    return bool({"avx512_bf16", "amx_bf16"} & cpu_info()[1])


def _bfloat16_copy(model: Any) -> Any:
    """The same network (same weights) computing in mixed bfloat16, or None if it cannot be rebuilt."""

    from unetpp_gui.core.fold import with_dtype_policy

    try:
        clone = type(model).from_config(with_dtype_policy(model.get_config(), "mixed_bfloat16"))
        clone.set_weights(model.get_weights())
    except Exception:  # subclassed or exotic models: stay in float32
        return None
    return clone


def resolve_model_path(path: str | Path | None) -> Path:
    """``path`` or the bundled model; a clear error when neither exists."""
    from unetpp_gui.resources import bundled_model_path

    if path:
        return Path(path)
    bundled = bundled_model_path()
    if not bundled.is_file():
        raise ModelError("No model given and no bundled model found; pass --model FILE.h5.")
    return bundled
