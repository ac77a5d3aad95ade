"""Per-channel intensity normalisation: the numbers, the engine using it, training storing it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from unetpp_gui.core.normalize import ChannelNorm, channel_percentiles, fit_channel_norm
from unetpp_gui.core.phantom import phantom


def _dimmed(img: np.ndarray, gains: tuple[float, float, float]) -> np.ndarray:
    return np.clip(np.round(img.astype(np.float32) * np.array(gains, np.float32)), 0, 255).astype(np.uint8)


def test_a_dim_channel_is_brought_back_to_its_target() -> None:
    img, _ = phantom(128, lesion=True, seed=3)
    norm = fit_channel_norm(img[None])
    dim = _dimmed(img, (1.0, 0.3, 0.8))  # a FLAIR channel at 30 % of its usual brightness
    gains = norm.gains(dim)
    assert gains[0] == pytest.approx(1.0, abs=0.03)
    assert gains[1] == pytest.approx(1 / 0.3, rel=0.05)
    assert gains[2] == pytest.approx(1 / 0.8, rel=0.05)
    restored = norm.apply(dim)
    assert restored.dtype == np.float32 and 0 <= restored.min() and restored.max() <= 255
    assert np.abs(restored - img).mean() < 2.0  # back to the original within rounding


@pytest.mark.parametrize("q", [0.0, 12.5, 50.0, 99.0, 100.0])
def test_histogram_percentiles_equal_numpys(q: float) -> None:
    rng = np.random.default_rng(int(q))
    x = rng.integers(0, 256, (40, 30, 3)).astype(np.uint8)
    x[..., 1] //= 4  # a skewed channel
    mask = rng.random((40, 30)) < 0.3
    assert np.allclose(channel_percentiles(x, mask, q), np.percentile(x[mask], q, axis=0))
    one = np.zeros_like(mask)
    one[3, 4] = True  # a single foreground pixel
    assert np.allclose(channel_percentiles(x, one, q), x[3, 4])


def test_gains_are_clipped_and_empty_slices_left_alone() -> None:
    norm = ChannelNorm(target=(150.0, 150.0, 150.0), max_gain=5.0)
    black = np.zeros((64, 64, 3), np.uint8)
    assert np.array_equal(norm.gains(black), np.ones(3))
    speck = black.copy()
    speck[0, 0] = 200  # one bright pixel: under min_foreground, so no rescaling
    assert np.array_equal(norm.apply(speck), speck.astype(np.float32))
    faint = np.full((64, 64, 3), 12, np.uint8)  # foreground, but a gain of 12.5 would be needed
    assert np.allclose(norm.gains(faint), 5.0)


def test_round_trip_through_metadata_and_unknown_entries() -> None:
    norm = ChannelNorm(target=(171.39, 148.0, 121.5), percentile=98.0)
    again = ChannelNorm.from_dict(norm.to_dict())
    assert again == norm
    assert ChannelNorm.from_dict({}) is None
    assert ChannelNorm.from_dict({"method": "z_score_from_the_future"}) is None
    with pytest.raises(ValueError, match="foreground"):
        fit_channel_norm(np.zeros((2, 32, 32, 3), np.uint8))


def test_engine_applies_the_models_normalisation(tmp_path: Path) -> None:
    """Same network, two metadata: with normalisation a dimmed copy of a slice predicts like the
    original; with plain scaling it does not."""
    from conftest import _tiny_unetpp, save_png
    from training.saving import save_model
    from unetpp_gui.core.inference import predict_paths
    from unetpp_gui.core.metadata import ModelMetadata
    from unetpp_gui.core.model_io import load_model

    img, _ = phantom(64, lesion=True, seed=5)
    bright = save_png(tmp_path / "bright.png", img)
    dim = save_png(tmp_path / "dim.png", _dimmed(img, (1.0, 0.35, 1.0)))
    import keras

    # An untrained network's sensitivity to intensity depends on its random weights: fix them, so the test does
    # not depend on the random state left by earlier tests (seeds 0-7 all pass; one unseeded full-suite draw failed).
    keras.utils.set_random_seed(0)
    net = _tiny_unetpp()
    target = tuple(float(t) for t in fit_channel_norm(img[None]).target)
    plain_path, norm_path = tmp_path / "plain.h5", tmp_path / "norm.h5"
    save_model(net, plain_path, ModelMetadata(name="plain"))
    save_model(net, norm_path, ModelMetadata(name="norm", input_normalization=ChannelNorm(target).to_dict()))

    def maps(path: Path) -> list[np.ndarray]:
        model = load_model(path)
        return [r.prob_q.astype(np.float32) for r in predict_paths(model, [bright, dim], with_gt=False)]

    plain = maps(plain_path)
    normed = maps(norm_path)
    assert load_model(norm_path).summary()["input_normalization"] == "channel_percentile"
    assert np.abs(normed[0] - normed[1]).max() <= 3  # probability levels (0..255): rounding only
    assert np.abs(plain[0] - plain[1]).max() > 3 * max(1.0, np.abs(normed[0] - normed[1]).max())


@pytest.mark.lgg
@pytest.mark.slow
def test_training_fits_stores_and_inherits_the_normalisation(lgg: Path, tmp_path: Path) -> None:
    from training.train import TrainConfig, train
    from unetpp_gui.core.metadata import read_metadata

    common = dict(data=[str(lgg)], base_filters=4, depth=3, image_size=64, epochs=1, batch_size=8,
                  max_patients=3, max_slices=16, augment=False, seed=1, strategy="default")
    first = tmp_path / "n.h5"
    train(TrainConfig(out=str(first), normalize="channel", **common))
    stored = ChannelNorm.from_dict(read_metadata(first).input_normalization)
    assert stored is not None and len(stored.target) == 3
    assert all(60 < t < 255 for t in stored.target)  # 99th percentiles of real FLAIR-era slices

    tuned = tmp_path / "t.h5"  # fine-tuning keeps the source model's normalisation by default
    train(TrainConfig(out=str(tuned), init_from=str(first), **common))
    assert ChannelNorm.from_dict(read_metadata(tuned).input_normalization) == stored
    with pytest.raises(ValueError, match="normalisation"):
        train(TrainConfig(out=str(tmp_path / "r.h5"), resume=str(first.with_name("n.last.h5")),
                          normalize="none", **{**common, "epochs": 2}))
