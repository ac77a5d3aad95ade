"""Missing-sequence augmentation: training images that look like the LGG slices whose pre- or post-contrast
sequence was missing (FLAIR stands in for it), in both input pipelines and through a real training run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import phantom_arrays, phantom_patients


def _slice(channels: int = 3, size: int = 8) -> np.ndarray:
    """A slice whose channels are told apart by their values (channel c holds 40 * (c + 1))."""
    return np.stack([np.full((size, size), 40 * (c + 1), np.uint8) for c in range(channels)], axis=-1)


def _pattern(x: np.ndarray) -> tuple[int, ...]:
    """Which of channels 0 and 2 FLAIR (channel 1) stands in for, per image of a batch (N, H, W, C) or one image."""
    return tuple(c for c in (0, 2) if np.array_equal(x[..., c], x[..., 1]))


def test_drop_sequences_copies_flair_in_the_datasets_three_patterns_at_the_asked_rate() -> None:
    from training.data import MISSING_PATTERNS, drop_sequences

    x = _slice(5)  # a 2.5-D input: its neighbours (channels 3, 4) are never touched
    rng = np.random.default_rng(0)
    seen = [drop_sequences(x, rng, 1.0) for _ in range(300)]
    assert {_pattern(s) for s in seen} == set(MISSING_PATTERNS)
    assert all(np.array_equal(s[..., [1, 3, 4]], x[..., [1, 3, 4]]) for s in seen)
    assert np.array_equal(x, _slice(5))  # the cached training array is not written to
    counts = {p: sum(_pattern(s) == p for s in seen) for p in MISSING_PATTERNS}
    assert all(60 <= n <= 140 for n in counts.values()), counts  # equal odds (100 each expected)

    rate = np.mean([_pattern(drop_sequences(x, rng, 0.25)) != () for _ in range(4000)])
    assert 0.22 <= rate <= 0.28
    before = rng.bit_generator.state
    assert drop_sequences(x, rng, 0.0) is x and rng.bit_generator.state == before  # off draws nothing
    two = _slice(2)
    assert drop_sequences(two, rng, 1.0) is two  # no third channel: nothing to stand in for


def _arrays():
    arrays = phantom_arrays()
    arrays.images[..., 0] //= 2  # three distinct channels, so a copied FLAIR shows
    arrays.images[..., 2] = 255 - arrays.images[..., 2]
    return arrays


def test_both_pipelines_drop_sequences_in_training_batches_only() -> None:
    """tf.data (TensorFlow) and SliceBatches (any Keras backend): every augmented training image at share 1 has a
    missing sequence (geometry and intensity jitter act on all channels alike, so the copy survives them);
    validation batches and runs without augmentation keep every sequence."""
    from training.batches import SliceBatches
    from training.data import make_dataset

    arrays = _arrays()
    assert all(_pattern(x) == () for x in arrays.images)

    def images(batches) -> list[np.ndarray]:
        return [np.asarray(x) for batch in batches for x in np.asarray(batch[0])]

    tf_train = images(make_dataset(arrays, 4, seed=1, missing_sequence=1.0))
    keras_train = images([SliceBatches(arrays, 4, seed=1, missing_sequence=1.0, workers=1)[i] for i in range(2)])
    for train in (tf_train, keras_train):
        assert len(train) == 8 and all(_pattern(x) != () for x in train)
        assert len({_pattern(x) for x in train}) > 1
    untouched = [images(make_dataset(arrays, 4, training=False, missing_sequence=1.0)),
                 images(make_dataset(arrays, 4, augment=False, missing_sequence=1.0)),
                 images([SliceBatches(arrays, 4, training=False, missing_sequence=1.0, workers=1)[0]]),
                 images([SliceBatches(arrays, 4, augment=False, missing_sequence=1.0, workers=1)[0]]),
                 images(make_dataset(arrays, 4, seed=1))]
    for batch in untouched:
        assert batch and all(_pattern(x) == () for x in batch)


@pytest.mark.slow
def test_training_with_missing_sequences_stores_the_share_and_resume_keeps_it(tmp_path: Path) -> None:
    import argparse

    from training.cli import add_train_arguments, config_from_args
    from training.train import TrainConfig, train
    from unetpp_gui.core.metadata import read_metadata

    data = phantom_patients(tmp_path / "data", ["PA", "PB", "PC"])
    out = tmp_path / "ms.h5"
    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    args = parser.parse_args(["--data", str(data), "--out", str(out), "--missing-sequence", "0.3"])
    assert config_from_args(args)["missing_sequence"] == 0.3
    cfg = TrainConfig(data=[str(data)], out=str(out), base_filters=2, depth=3, image_size=64, epochs=1,
                      batch_size=4, val_patients=["PC"], strategy="default", missing_sequence=0.3)
    result = train(cfg)
    assert result.status == "done"
    assert read_metadata(out).training["config"]["missing_sequence"] == 0.3
    again = train(TrainConfig(data=[str(data)], out=str(out), epochs=2, resume=str(result.last_path),
                              strategy="default"))  # the command line's default (0) does not win over the run's
    assert again.status == "done" and read_metadata(out).training["config"]["missing_sequence"] == 0.3
    with pytest.raises(ValueError, match="missing-sequence"):
        train(TrainConfig(data=[str(data)], out=str(tmp_path / "x.h5"), missing_sequence=1.5))
