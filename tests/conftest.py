"""Shared fixtures: tiny real Keras models saved to disk, real PNG files, the LGG data."""

from __future__ import annotations

import faulthandler
import io
import os
import threading
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tempfile  # noqa: E402

# measured batch sizes are cached under XDG_CACHE_HOME: never in the home of whoever runs the tests
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="unetpp-test-cache-")
# GUI and CLI tests run TensorFlow unless a test asks for OpenVINO (tests/test_openvino.py)
os.environ["UNETPP_RUNTIME"] = "tensorflow"

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
LGG = Path(os.environ.get("UNETPP_LGG", ROOT.parent / "shared" / "data" / "lgg"))
_HANG_FD = pytest.StashKey[int]()


#: A test that runs longer than this is hung: every thread's stack is written to the terminal and the run ends.
#: pytest-timeout (600 s, pyproject.toml) does that from a Python thread, which never runs while a hung thread
#: holds the interpreter lock; faulthandler's watchdog is a C thread that needs no lock (one CI run of the whole
#: suite stopped inside tests/test_gui.py without either report and ran into CI's time limit).
HANG_S = float(os.environ.get("UNETPP_TEST_HANG_S", "660"))


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_HANG_FD] = os.dup(2)  # the terminal's stderr, taken before output capture replaces fd 2


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):
    faulthandler.dump_traceback_later(HANG_S, exit=True, file=item.config.stash[_HANG_FD])
    try:
        return (yield)
    finally:
        faulthandler.cancel_dump_traceback_later()


def lgg_available() -> bool:
    return LGG.is_dir() and any(LGG.glob("TCGA_*"))


@pytest.fixture(scope="session")
def lgg() -> Path:
    if not lgg_available():
        pytest.skip("LGG dataset not found in ../shared/data/lgg")
    return LGG


def lgg_case_slices(case_dir: Path) -> list[Path]:
    from unetpp_gui.core.discovery import discover

    return discover([case_dir]).slices


@pytest.fixture(scope="session")
def lgg_tumour_and_clear(lgg: Path) -> tuple[list[Path], list[Path]]:
    """A few slices with large tumours and a few with none, from one patient."""
    from unetpp_gui.core.image_io import load_mask

    case = sorted(lgg.glob("TCGA_*"))[0]
    tumour, clear = [], []
    for s in lgg_case_slices(case):
        m = load_mask(s.with_name(f"{s.stem}_mask.png"))
        (tumour if m.sum() > 800 else clear if m.sum() == 0 else []).append(s)
    return tumour, clear


def save_png(path: Path, arr: np.ndarray, mode: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr, mode=mode).save(path) if mode else Image.fromarray(arr).save(path)
    return path


class CancelAtFirstCheckpoint(io.StringIO):
    """A ``train(json_stream=...)`` that sets ``cancel`` at the first checkpoint event: the run stops during
    its next epoch, leaving a last checkpoint at an unfinished run's epoch 1."""

    def __init__(self, cancel: threading.Event) -> None:
        super().__init__()
        self.cancel = cancel

    def write(self, text: str) -> int:
        if '"event": "checkpoint"' in text:
            self.cancel.set()
        return super().write(text)


def phantom_arrays(n: int = 8, size: int = 32):
    """A training-set ArraySet of ``n`` phantom slices with lesions and their masks, one patient ("p")."""
    from training.data import ArraySet
    from unetpp_gui.core.phantom import phantom

    pairs = [phantom(size, lesion=True, seed=i) for i in range(n)]
    return ArraySet(np.stack([img for img, _ in pairs]).astype(np.uint8),
                    np.stack([m[..., None] for _, m in pairs]).astype(np.uint8), ["p"] * n)


def phantom_patients(root: Path, names: list[str], n: int = 4) -> Path:
    """Patient folders of 64x64 phantom slices with masks (every other slice has a lesion)."""
    from unetpp_gui.core.phantom import phantom

    for k, name in enumerate(names):
        for i in range(n):
            img, mask = phantom(64, lesion=i % 2 == 0, seed=10 * k + i)
            save_png(root / name / f"{name}_{i + 1}.png", img)
            save_png(root / name / f"{name}_{i + 1}_mask.png", mask.astype(np.uint8) * 255)
    return root


@pytest.fixture
def phantom_folder(tmp_path: Path) -> Path:
    """A patient folder of phantom slices with masks, plus one broken PNG."""
    from unetpp_gui.core.phantom import phantom

    folder = tmp_path / "study" / "patient_A"
    for i in range(5):
        img, mask = phantom(64, lesion=i % 2 == 0, seed=i)
        save_png(folder / f"p_{i + 1}.png", img)
        save_png(folder / f"p_{i + 1}_mask.png", mask.astype(np.uint8) * 255)
    (folder / "p_3.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    return folder


def _tiny_unetpp(input_shape=(64, 64, 3), deep_supervision=False):
    from training.models import build_unetpp

    return build_unetpp(input_shape, base_filters=2, depth=3, deep_supervision=deep_supervision)


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real (untrained) tiny UNet++ with project metadata, saved as .h5."""
    from training.saving import save_model
    from unetpp_gui.core.metadata import ModelMetadata

    path = tmp_path_factory.mktemp("models") / "tiny.h5"
    meta = ModelMetadata(name="tiny", pixel_threshold=0.4, decision_threshold=0.01,
                         architecture={"name": "unetpp", "input_shape": [64, 64, 3], "base_filters": 2, "depth": 3})
    save_model(_tiny_unetpp(), path, meta)
    return path


@pytest.fixture(scope="session")
def tiny_model(tiny_model_path: Path):
    from unetpp_gui.core.model_io import load_model

    return load_model(tiny_model_path)


@pytest.fixture
def window(qtbot, tmp_path: Path, tiny_model_path: Path):
    """A shown main window (settings in a temp file) with the tiny model loaded."""
    from PySide6.QtCore import QSettings

    from unetpp_gui.ui.main_window import MainWindow

    win = MainWindow(settings=QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat), batch_size=4)
    qtbot.addWidget(win)
    win.show()
    with qtbot.waitSignal(win.model_changed, timeout=120_000):
        win.load_model(tiny_model_path)
    yield win
    win.cancel_predictions()
    qtbot.waitUntil(lambda: not win.busy(), timeout=120_000)


def bright_model(path: Path, patient_filter: dict) -> Path:
    """A real one-layer Keras model that calls bright pixels tumour (green channel > 0.6)."""
    import keras

    from training.saving import save_model
    from unetpp_gui.core.metadata import ModelMetadata

    inp = keras.Input((64, 64, 3))
    conv = keras.layers.Conv2D(1, 1, activation="sigmoid", name="bright")
    model = keras.Model(inp, conv(inp))
    conv.set_weights([np.array([0.0, 40.0, 0.0], np.float32).reshape(1, 1, 3, 1), np.array([-24.0], np.float32)])
    meta = ModelMetadata(name="bright", pixel_threshold=0.5, decision_threshold=0.0001,
                         patient_filter=patient_filter)
    save_model(model, path, meta)
    return path


def patient_folder(folder: Path) -> None:
    for i in range(4):
        img = np.full((64, 64, 3), 60, np.uint8)
        if i >= 1:
            img[20:30, 20:30] = 230  # the lesion, through slices 1-3
        if i == 0:
            img[50:52, 5:7] = 230  # a speck on slice 0, connected to nothing
        save_png(folder / f"case_{i}.png", img)
