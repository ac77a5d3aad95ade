"""Model loading: formats, output kinds, safety, and clear errors for unusable files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from unetpp_gui.core.errors import ModelError
from unetpp_gui.core.metadata import DEFAULT_DECISION_THRESHOLD, read_metadata
from unetpp_gui.core.model_io import load_model


def _simple(input_shape, out_channels=1, activation="sigmoid"):
    import keras
    from keras import layers

    x = keras.Input(input_shape)
    y = layers.Conv2D(4, 3, padding="same", activation="relu")(x)
    y = layers.Conv2D(out_channels, 1, activation=activation)(y)
    return keras.Model(x, y)


def test_project_model_carries_metadata(tiny_model_path: Path, tiny_model) -> None:
    assert tiny_model.input_hw == (64, 64) and tiny_model.channels == 3
    assert tiny_model.metadata.from_file and tiny_model.metadata.pixel_threshold == 0.4
    assert tiny_model.metadata.decision_threshold == 0.01
    out = tiny_model.predict_batch(np.zeros((2, 64, 64, 3), np.float32))
    assert out.shape == (2, 64, 64) and out.dtype == np.float32 and 0 <= out.min() <= out.max() <= 1


def test_foreign_h5_gets_documented_defaults(tmp_path: Path) -> None:
    _simple((32, 32, 3)).save(tmp_path / "foreign.h5")
    m = load_model(tmp_path / "foreign.h5")
    assert not m.metadata.from_file
    assert m.metadata.pixel_threshold == 0.5 and m.metadata.decision_threshold == DEFAULT_DECISION_THRESHOLD
    assert m.metadata.input_scale == pytest.approx(1 / 255)


def test_keras_archive_any_size_and_one_channel(tmp_path: Path) -> None:
    _simple((None, None, 1)).save(tmp_path / "gray.keras")
    m = load_model(tmp_path / "gray.keras")
    assert m.input_hw is None and m.channels == 1
    out = m.predict_batch(np.zeros((1, 48, 32, 1), np.float32))
    assert out.shape == (1, 48, 32)


def test_softmax_two_channels_uses_channel_one(tmp_path: Path) -> None:
    import keras

    model = _simple((16, 16, 3), out_channels=2, activation="softmax")
    # make channel 1 certain everywhere: bias of the last conv strongly favours it
    w, b = model.layers[-1].get_weights()
    model.layers[-1].set_weights([w * 0, np.array([-10.0, 10.0], np.float32)])
    model.save(tmp_path / "softmax.h5")
    m = load_model(tmp_path / "softmax.h5")
    assert m.output_channels == 2
    assert m.predict_batch(np.zeros((1, 16, 16, 3), np.float32)).min() > 0.99
    del keras


def test_logit_head_gets_sigmoid(tmp_path: Path) -> None:
    model = _simple((16, 16, 3), activation="linear")
    w, b = model.layers[-1].get_weights()
    model.layers[-1].set_weights([w * 0, np.array([-20.0], np.float32)])
    model.save(tmp_path / "logits.h5")
    m = load_model(tmp_path / "logits.h5")
    assert m.apply_activation == "sigmoid"
    assert m.predict_batch(np.zeros((1, 16, 16, 3), np.float32)).max() < 1e-6


def test_deep_supervision_uses_last_output_unless_told(tmp_path: Path) -> None:
    from training.models import build_unetpp

    build_unetpp((32, 32, 3), base_filters=2, depth=3, deep_supervision=True).save(tmp_path / "ds.h5")
    m = load_model(tmp_path / "ds.h5")
    assert m.n_outputs == 2 and m.output_index == 1
    first = load_model(tmp_path / "ds.h5", output_index=0)
    assert first.output_index == 0
    x = np.random.default_rng(0).random((1, 32, 32, 3)).astype(np.float32)
    assert not np.allclose(m.predict_batch(x), first.predict_batch(x))
    with pytest.raises(ModelError, match="output 5"):
        load_model(tmp_path / "ds.h5", output_index=5)


def test_lambda_model_refused_unless_trusted(tmp_path: Path) -> None:
    import keras
    from keras import layers

    x = keras.Input((16, 16, 3))
    y = layers.Lambda(lambda t: t * 0.5, name="halve")(x)
    y = layers.Conv2D(1, 1, activation="sigmoid")(y)
    keras.Model(x, y).save(tmp_path / "lambda.h5")
    with pytest.raises(ModelError, match="halve.*trust"):
        load_model(tmp_path / "lambda.h5")
    # trusting is an explicit choice, in a separate process so the global Keras flag stays off here
    code = ("from unetpp_gui.core.model_io import load_model; "
            f"m = load_model(r'{tmp_path / 'lambda.h5'}', trust=True); print(m.n_params)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "4"


@pytest.mark.parametrize(
    "content, match",
    [
        (b"definitely not hdf5", "not an HDF5 model"),
        (None, "not found"),
    ],
)
def test_not_a_model(tmp_path: Path, content: bytes | None, match: str) -> None:
    path = tmp_path / "bad.h5"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ModelError, match=match):
        load_model(path)


def test_weights_only_and_wrong_shapes(tmp_path: Path) -> None:
    model = _simple((16, 16, 3))
    model.save_weights(tmp_path / "only.weights.h5")
    with pytest.raises(ModelError, match="weights only"):
        load_model(tmp_path / "only.weights.h5")
    _simple((16, 16, 2)).save(tmp_path / "two_channels.h5")
    with pytest.raises(ModelError, match="1 or 3 channels"):
        load_model(tmp_path / "two_channels.h5")
    _simple((16, 16, 3), out_channels=5, activation="softmax").save(tmp_path / "five.h5")
    with pytest.raises(ModelError, match="not a segmentation map"):
        load_model(tmp_path / "five.h5")
    (tmp_path / "m.onnx").write_bytes(b"x")
    with pytest.raises(ModelError, match="unsupported"):
        load_model(tmp_path / "m.onnx")


def test_tf_keras2_h5_with_optimizer_state(tmp_path: Path) -> None:
    """Files written by tf.keras 2.x (e.g. a Colab notebook), with optimizer state, load."""
    pytest.importorskip("tf_keras", reason="tf-keras (Keras 2) is installed by .ci/run for this test")
    code = f"""
import numpy as np, tf_keras as k
x = k.Input((32, 32, 3)); y = k.layers.Conv2D(4, 3, padding='same', activation='relu')(x)
y = k.layers.BatchNormalization()(y); y = k.layers.Conv2D(1, 1, activation='sigmoid')(y)
m = k.Model(x, y); m.compile(optimizer=k.optimizers.Adam(1e-4), loss='binary_crossentropy')
m.fit(np.zeros((4, 32, 32, 3)), np.zeros((4, 32, 32, 1)), epochs=1, verbose=0)
m.save(r'{tmp_path / "keras2.h5"}')
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    import h5py

    with h5py.File(tmp_path / "keras2.h5") as f:
        assert f.attrs["keras_version"].startswith("2.") and "optimizer_weights" in f
    m = load_model(tmp_path / "keras2.h5")
    assert m.input_hw == (32, 32) and not read_metadata(tmp_path / "keras2.h5").from_file
    assert m.predict_batch(np.zeros((1, 32, 32, 3), np.float32)).shape == (1, 32, 32)


def test_pruned_and_test_time_augmented_inference(tmp_path: Path) -> None:
    from training.models import build_unetpp

    build_unetpp((32, 32, 3), base_filters=2, depth=4, deep_supervision=True).save(tmp_path / "ds.h5")
    full = load_model(tmp_path / "ds.h5")
    assert full.prune_levels == (1, 2, 3)
    x = np.random.default_rng(0).random((2, 32, 32, 3)).astype(np.float32)
    for level in (1, 2):
        pruned = load_model(tmp_path / "ds.h5", prune_level=level)
        assert pruned.n_params < full.n_params and pruned.n_outputs == 1
        same_head = load_model(tmp_path / "ds.h5", output_index=level - 1)
        np.testing.assert_allclose(pruned.predict_batch(x), same_head.predict_batch(x), atol=1e-5)
    with pytest.raises(ModelError, match="cannot be pruned"):
        load_model(tmp_path / "ds.h5", prune_level=4)
    tta = load_model(tmp_path / "ds.h5", tta=True)
    mean, std = tta.predict_batch_with_std(x)
    a = full.predict_batch(x)
    b = full.predict_batch(x[:, :, ::-1].copy())[:, :, ::-1]
    np.testing.assert_allclose(mean, (a + b) / 2, atol=1e-5)
    np.testing.assert_allclose(std, np.abs(a - b) / 2, atol=1e-5)


def test_bfloat16_inference_matches_float32(tmp_path: Path) -> None:
    from training.models import build_unetpp
    from unetpp_gui.core.model_io import cpu_supports_bf16

    build_unetpp((32, 32, 3), base_filters=4, depth=3, deep_supervision=True).save(tmp_path / "m.h5")
    fp32 = load_model(tmp_path / "m.h5")
    bf16 = load_model(tmp_path / "m.h5", precision="bfloat16")
    assert fp32.precision == "float32" and bf16.precision == "bfloat16"
    assert bf16.runtime_model.layers[1].dtype_policy.name == "mixed_bfloat16" and bf16.n_params == fp32.n_params
    assert bf16.keras_model.layers[1].dtype_policy.name == "float32"  # the file's network is untouched
    # folded and bfloat16 in one rebuild: as many batch norms folded as in float32
    assert bf16.folded_batch_norms == fp32.folded_batch_norms > 0
    assert not any(type(layer).__name__ == "BatchNormalization" for layer in bf16.runtime_model.layers)
    x = np.random.default_rng(1).random((4, 32, 32, 3)).astype(np.float32)
    a, b = fp32.predict_batch(x), bf16.predict_batch(x)
    assert b.dtype == np.float32 and np.abs(a - b).max() < 0.02  # bfloat16 keeps ~3 significant digits
    assert a.max() - a.min() > 1e-3  # the maps are not constant
    pruned = load_model(tmp_path / "m.h5", prune_level=2, precision="bfloat16")
    assert pruned.precision == "bfloat16" and pruned.predict_batch(x).shape == (4, 32, 32)
    auto = load_model(tmp_path / "m.h5", precision="auto")
    assert auto.precision == ("bfloat16" if cpu_supports_bf16() else "float32")
    with pytest.raises(ValueError, match="precision"):
        load_model(tmp_path / "m.h5", precision="float16")


def _randomise_batch_norms(model, seed: int = 0) -> int:
    """Give every batch norm non-trivial statistics, so a wrong fold changes the output."""
    import keras

    rng = np.random.default_rng(seed)
    n = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 2, c), rng.normal(0, 0.5, c), rng.normal(0, 0.5, c),
                               rng.uniform(0.2, 3, c)])
            n += 1
    return n


def test_batch_norm_folding_keeps_the_function(tmp_path: Path) -> None:
    import keras

    from training.models import build_unetpp

    model = build_unetpp((32, 32, 3), base_filters=4, depth=3, deep_supervision=True)
    n_bn = _randomise_batch_norms(model)
    model.save(tmp_path / "m.h5")
    loaded = load_model(tmp_path / "m.h5")
    assert n_bn == 12 and loaded.folded_batch_norms == n_bn
    assert not any(isinstance(l, keras.layers.BatchNormalization) for l in loaded.runtime_model.layers)
    assert sum(isinstance(l, keras.layers.BatchNormalization) for l in loaded.keras_model.layers) == n_bn
    assert loaded.n_params == model.count_params()
    x = np.random.default_rng(2).random((3, 32, 32, 3)).astype(np.float32)
    want = np.asarray(model(x, training=False)[-1])[..., 0]
    got = loaded.predict_batch(x)
    assert want.std() > 0.01  # a map that depends on the input
    np.testing.assert_allclose(got, want, atol=2e-5)
    pruned = load_model(tmp_path / "m.h5", prune_level=1)
    np.testing.assert_allclose(pruned.predict_batch(x), np.asarray(model(x, training=False)[0])[..., 0],
                               atol=2e-5)


def test_batch_norm_folding_skips_what_it_cannot_fold(tmp_path: Path) -> None:
    import keras
    from keras import layers

    inp = keras.Input((16, 16, 1))
    a = layers.Conv2D(4, 3, padding="same", name="shared_conv")(inp)
    a_bn = layers.BatchNormalization(name="bn_of_shared")(a)
    b = layers.Conv2D(4, 3, padding="same", activation="relu", name="relu_conv")(inp)
    b_bn = layers.BatchNormalization(name="bn_after_relu")(b)
    c = layers.Conv2D(4, 3, padding="same", name="plain_conv")(inp)
    c_bn = layers.BatchNormalization(name="bn_foldable")(c)
    x = layers.Concatenate()([a_bn, a, b_bn, c_bn])  # shared_conv is read twice
    out = layers.Conv2D(1, 1, activation="sigmoid", name="head")(x)
    model = keras.Model(inp, out)
    _randomise_batch_norms(model, seed=3)
    model.save(tmp_path / "mixed.h5")
    loaded = load_model(tmp_path / "mixed.h5")
    assert loaded.folded_batch_norms == 1
    names = {l.name: type(l).__name__ for l in loaded.runtime_model.layers}
    assert names["bn_foldable"] == "Identity"
    assert names["bn_of_shared"] == names["bn_after_relu"] == "BatchNormalization"
    xs = np.random.default_rng(4).random((2, 16, 16, 1)).astype(np.float32)
    np.testing.assert_allclose(loaded.predict_batch(xs), np.asarray(model(xs, training=False))[..., 0],
                               atol=2e-5)


def test_an_isa_cap_below_avx512_hides_avx512_and_amx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ONEDNN_MAX_CPU_ISA=AVX2 makes TensorFlow's kernels run as on an AVX2-only CPU: the app must then not pick
    bfloat16 (emulated there) nor share batch-size measurements with the uncapped machine."""
    from unetpp_gui.core import batching, model_io

    info = tmp_path / "cpuinfo"
    info.write_text("model name\t: Test CPU\nflags\t\t: fpu avx2 fma avx512f avx512_bf16 amx_bf16\n")
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    assert model_io.cpu_info(info) == ("Test CPU", frozenset({"fpu", "avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16"}))
    model = type("M", (), {"path": tmp_path / "m.h5", "precision": "float32", "tta": False, "prune_level": None})()
    uncapped = batching.cache_key(model)
    for var, value in (("ONEDNN_MAX_CPU_ISA", "avx2"), ("DNNL_MAX_CPU_ISA", "AVX2_VNNI")):
        monkeypatch.setenv(var, value)
        assert model_io.cpu_info(info)[1] == {"fpu", "avx2", "fma"}
        assert not model_io.cpu_supports_bf16()
        assert batching.cache_key(model) != uncapped
        monkeypatch.delenv(var)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_BF16")  # a cap at or above AVX-512 hides nothing
    assert "avx512_bf16" in model_io.cpu_info(info)[1]
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "ALL")
    assert model_io.isa_cap() is None and batching.cache_key(model) == uncapped
