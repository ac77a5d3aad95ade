"""The direct OpenVINO build of a Keras .h5 network (no TensorFlow): TensorFlow's probabilities and network facts,
every layer type it covers, and the Keras conversion for anything it does not cover."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from unetpp_gui.core import openvino_runtime
from unetpp_gui.core.model_io import load_model

pytestmark = pytest.mark.skipif(openvino_runtime.version() is None, reason="OpenVINO not installed")


def _batch(hw: int = 64) -> np.ndarray:
    rng = np.random.default_rng(5)
    x = rng.random((3, hw, hw, 3), np.float32)
    x[:, hw // 4: hw // 2, hw // 8: hw // 2] = 0.9
    return x


def _same(tf_model, ov_model, x: np.ndarray) -> None:
    p_tf, p_ov = tf_model.predict_batch(x), ov_model.predict_batch(x)
    assert p_tf.std() > 1e-3, "the probabilities must vary for the comparison to mean anything"
    assert np.abs(p_tf - p_ov).max() < 1e-5
    for t in (0.3, 0.5, 0.7):
        differ = (p_tf > t) != (p_ov > t)
        assert not differ.any() or np.abs(p_tf[differ] - t).max() < 1e-5


def _random_batch_norms(model, seed: int = 1) -> None:
    """Batch norms with moving statistics and affine weights far from the identity, so folding them matters."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if type(layer).__name__ == "BatchNormalization":
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 2, gamma.shape), rng.normal(0, 0.5, beta.shape),
                               rng.normal(0, 0.5, mean.shape), rng.uniform(0.2, 3, var.shape)])


@pytest.fixture(scope="module")
def ds_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from conftest import _tiny_unetpp
    from training.saving import save_model
    from unetpp_gui.core.metadata import ModelMetadata

    import keras

    keras.utils.set_random_seed(11)
    model = _tiny_unetpp(deep_supervision=True)
    _random_batch_norms(model)
    path = tmp_path_factory.mktemp("graph") / "ds.h5"
    arch = {"name": "unetpp", "input_shape": [64, 64, 3], "base_filters": 2, "depth": 3, "deep_supervision": True}
    save_model(model, path, ModelMetadata(name="ds", architecture=arch))
    return path


@pytest.mark.parametrize("variant", [{}, {"prune_level": 1}, {"prune_level": 2}, {"tta": True}])
def test_direct_build_gives_tensorflows_probabilities_and_facts(ds_path: Path, variant: dict, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    tf_model = load_model(ds_path, **variant)
    ov_model = load_model(ds_path, runtime="openvino", **variant)
    assert ov_model.runtime == "openvino" and "built" in ov_model.runtime_note, ov_model.runtime_note
    assert ov_model.keras_model is None  # no Keras network was made
    _same(tf_model, ov_model, _batch())
    facts = openvino_runtime.NETWORK_FACTS
    assert {k: getattr(ov_model, k) for k in facts} == {k: getattr(tf_model, k) for k in facts}
    again = load_model(ds_path, runtime="openvino", **variant)  # a later start reads the cached copy
    assert "cached" in again.runtime_note and len(list((tmp_path / "cache").rglob("*.xml"))) == 1


def _odd_network(path: Path) -> Path:
    """Every layer type and option the direct build covers beyond the UNet++ blocks: strided and activated
    convolutions, "same" max pooling, a batch norm that cannot be folded (after a concatenation), dropout, a
    ReLU layer, a "valid" transposed convolution and a two-channel logit head (softmax applied by the engine)."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(3)
    x = keras.Input((32, 32, 3), name="image")
    a = layers.Conv2D(4, 3, padding="same", activation="relu")(x)
    b = layers.Conv2D(4, 3, strides=2, padding="same")(a)
    b = layers.BatchNormalization()(b)
    c = layers.MaxPooling2D(3, strides=2, padding="same")(a)
    d = layers.BatchNormalization()(layers.Concatenate()([b, c]))
    d = layers.ReLU()(layers.Dropout(0.3)(d))
    u = layers.Conv2DTranspose(4, 2, strides=2, padding="valid")(d)
    e = layers.Activation("relu")(layers.Concatenate()([a, u]))
    model = keras.Model(x, layers.Conv2D(2, 1)(e))
    _random_batch_norms(model)
    model.save(path)
    return path


def test_direct_build_covers_each_layer_type_it_claims(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    path = _odd_network(tmp_path / "odd.h5")
    tf_model = load_model(path)
    ov_model = load_model(path, runtime="openvino")
    assert "built" in ov_model.runtime_note and ov_model.apply_activation == "softmax" and ov_model.output_channels == 2
    assert ov_model.folded_batch_norms == tf_model.folded_batch_norms == 1 and ov_model.n_params == tf_model.n_params
    _same(tf_model, ov_model, _batch(32))


def test_what_the_direct_build_does_not_cover_is_converted_through_keras(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A layer it does not know (LeakyReLU here) or a .keras archive: no direct build, the Keras conversion runs."""
    import keras
    from keras import layers

    from unetpp_gui.core.openvino_graph import Unsupported, build

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    x = keras.Input((16, 16, 3))
    model = keras.Model(x, layers.Conv2D(1, 1, activation="sigmoid")(layers.LeakyReLU()(layers.Conv2D(2, 3)(x))))
    for path in (tmp_path / "leaky.h5", tmp_path / "plain.keras"):
        model.save(path)
        with pytest.raises(Unsupported):
            build(path)
        assert openvino_runtime.direct_conversion(path, None, -1) is None
        ov_model = load_model(path, runtime="openvino")
        assert ov_model.runtime == "openvino" and "converted" in ov_model.runtime_note
        _same(load_model(path), ov_model, _batch(16) * 4 - 2)


_FIRST_START = """
import json, sys
from unetpp_gui.core.model_io import load_model
m = load_model(sys.argv[1], runtime="auto")
print(json.dumps({"tensorflow": "tensorflow" in sys.modules, "keras": "keras" in sys.modules,
                  "runtime": m.runtime, "note": m.runtime_note}))
"""


def test_a_first_start_on_auto_never_imports_tensorflow(ds_path: Path, tmp_path: Path) -> None:
    """An empty cache: the network is built for OpenVINO from the file, TensorFlow is not timed, not imported."""
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    res = subprocess.run([sys.executable, "-c", _FIRST_START, str(ds_path)], capture_output=True, text=True,
                         env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    seen = json.loads(res.stdout.strip().splitlines()[-1])
    assert seen["tensorflow"] is False and seen["keras"] is False and seen["runtime"] == "openvino"
    assert "built" in seen["note"] and "TensorFlow not timed" in seen["note"]


def test_direct_build_reads_files_written_by_tf_keras_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A .h5 written by tf.keras 2.x (Colab-era files): its layer list form and ":0" weight names."""
    pytest.importorskip("tf_keras", reason="tf-keras (Keras 2) is installed by README's test command")
    path = tmp_path / "keras2.h5"
    code = f"""
import numpy as np, tf_keras as k
x = k.Input((32, 32, 3)); a = k.layers.Conv2D(4, 3, padding='same', use_bias=False)(x)
a = k.layers.Activation('relu')(k.layers.BatchNormalization()(a))
b = k.layers.Conv2D(8, 3, padding='same', activation='relu')(k.layers.MaxPooling2D(3, 1, padding='same')(a))
m = k.Model(x, k.layers.Conv2D(1, 1, activation='sigmoid')(k.layers.Concatenate()([a, b])))
m.compile(optimizer='adam', loss='binary_crossentropy')
rng = np.random.default_rng(0)
m.fit(rng.random((8, 32, 32, 3)) * 3, rng.random((8, 32, 32, 1)) > 0.5, epochs=2, verbose=0)
m.save(r'{path}')
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    ov_model = load_model(path, runtime="openvino")
    assert "built" in ov_model.runtime_note and ov_model.folded_batch_norms == 1
    _same(load_model(path), ov_model, _batch(32) * 3)
