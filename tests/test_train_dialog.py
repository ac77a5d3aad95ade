"""Retrain dialog: a real training subprocess, live curves, cancel, and the hand-over to the viewer."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import QSettings

from unetpp_gui.core.discovery import discover
from unetpp_gui.ui.main_window import MainWindow
from unetpp_gui.ui.train_dialog import TrainDialog

WAIT = 600_000


@pytest.fixture
def small_data(tmp_path: Path, lgg: Path) -> Path:
    """Two real patients, 10 slices each (links, not copies)."""
    root = tmp_path / "data"
    for case in sorted(lgg.glob("TCGA_*"))[:2]:
        (root / case.name).mkdir(parents=True)
        for s in discover([case]).slices[6:16]:
            (root / case.name / s.name).symlink_to(s)
            (root / case.name / f"{s.stem}_mask.png").symlink_to(s.with_name(f"{s.stem}_mask.png"))
    return root


def _configure(dialog: TrainDialog, out: Path, epochs: int) -> None:
    dialog.filters.setValue(4)
    dialog.image_size.setValue(64)
    dialog.epochs.setValue(epochs)
    dialog.batch.setValue(4)
    dialog.val_fraction.setValue(0.5)
    dialog.augment.setChecked(False)
    dialog.mixed.setChecked(False)
    dialog.out_edit.setText(str(out))


@pytest.mark.lgg
@pytest.mark.slow
def test_dialog_trains_then_viewer_uses_the_model(qtbot, small_data: Path, tmp_path: Path,
                                                  tiny_model_path: Path) -> None:
    win = MainWindow(settings=QSettings(str(tmp_path / "s.ini"), QSettings.IniFormat))
    qtbot.addWidget(win)
    with qtbot.waitSignal(win.model_changed, timeout=WAIT):
        win.load_model(tiny_model_path)
    dialog = win.show_training()
    with qtbot.waitSignal(dialog.scanned, timeout=WAIT):
        _scan(dialog, small_data)
    assert dialog.scan["pairs"] == 20 and dialog.scan["patients"] == 2 and dialog.start_button.isEnabled()
    assert dialog.preview.count() >= 1  # pairing preview thumbnails
    out = tmp_path / "models" / "retrained.h5"
    _configure(dialog, out, epochs=1)
    dialog.context.setValue(1)  # a 2.5-D network with a weight average, as the cross-validated recipe
    dialog.ema.setChecked(True)
    with qtbot.waitSignal(dialog.finished_training, timeout=WAIT) as done:
        dialog.start()
    assert done.args == ["done"], dialog.log.toPlainText()[-3000:]
    assert len(dialog.epoch_x) == 1 and len(dialog.dice_y) == 1 and dialog.batch_x  # curves got points
    # validation Dice on its own 0..1 axis (right), whatever the loss's scale; the same epochs along x
    assert dialog.curve_dice.getViewBox() is dialog.dice_view and dialog.plot.getAxis("right").isVisible()
    low, high = dialog.dice_view.viewRange()[1]
    assert -0.05 <= low <= 0.0 and 1.0 <= high <= 1.05
    assert dialog.curve_dice.getData()[1].tolist() == dialog.dice_y
    assert dialog.dice_view.viewRange()[0] == dialog.plot.getPlotItem().vb.viewRange()[0]
    # whole epochs only along x, in a short run as in a long one
    axis = dialog.plot.getAxis("bottom")
    for low, high in ((0.8, 4.2), (1.0, 75.0)):
        values = [v for _spacing, vs in axis.tickValues(low, high, 500) for v in vs]
        assert values and all(float(v).is_integer() for v in values), values
    assert out.is_file() and dialog.use_button.isEnabled() and "Best validation Dice" in dialog.summary.text()
    with qtbot.waitSignal(win.model_changed, timeout=WAIT):
        dialog.use_button.click()
    assert win.model.path == out and win.model.input_hw == (64, 64)
    assert win.model.normalization is not None  # the dialog's default: fitted and stored in the model
    assert win.model.context.slices == 1 and win.model.channels == 5  # the FLAIR of one neighbour each side
    assert win.model.metadata.training["config"]["ema"] == 0.995


@pytest.mark.lgg
@pytest.mark.slow
def test_cancel_leaves_no_partial_file_and_resume_works(qtbot, small_data: Path, tmp_path: Path) -> None:
    dialog = TrainDialog()
    qtbot.addWidget(dialog)
    with qtbot.waitSignal(dialog.scanned, timeout=WAIT):
        _scan(dialog, small_data)
    out = tmp_path / "m" / "c.h5"
    _configure(dialog, out, epochs=40)

    dialog.start()
    qtbot.waitUntil(lambda: dialog.proc is None or any(e.get("event") == "checkpoint" for e in dialog.events),
                    timeout=WAIT)
    assert dialog.proc is not None, dialog.log.toPlainText()[-3000:]  # still training, epoch 1 saved
    with qtbot.waitSignal(dialog.finished_training, timeout=WAIT) as done:
        dialog.cancel()  # during epoch 2
    assert done.args == ["cancelled"]
    files = sorted(p.name for p in out.parent.iterdir())
    assert files == ["c.h5", "c.last.h5", "c.split.json"]  # no temp or cancel files left
    assert dialog.resume_button.isEnabled()
    from unetpp_gui.core.metadata import read_metadata

    epoch = read_metadata(out.with_name("c.last.h5")).training["epoch"]
    dialog.epochs.setValue(epoch + 1)
    with qtbot.waitSignal(dialog.finished_training, timeout=WAIT) as done2:
        dialog.start(resume=True)
    assert done2.args == ["done"]
    assert read_metadata(out.with_name("c.last.h5")).training["epoch"] == epoch + 1


def test_bad_folders_give_clear_messages(qtbot, tmp_path: Path) -> None:
    dialog = TrainDialog()
    qtbot.addWidget(dialog)
    dialog.set_data(str(tmp_path / "missing"))
    assert "is not a folder" in dialog.scan_label.text() and not dialog.start_button.isEnabled()
    empty = tmp_path / "empty"
    (empty / "p1").mkdir(parents=True)
    (empty / "p1" / "a.png").write_bytes(b"x")
    with qtbot.waitSignal(dialog.scanned, timeout=WAIT):
        _scan(dialog, empty)
    assert "No image/mask pairs found" in dialog.scan_label.text()
    assert "no mask found" in dialog.problems.toPlainText()


def _scan(dialog: TrainDialog, folder: Path):
    dialog.data_edit.setText(str(folder))
    return dialog.scan_data()


def test_defaults_are_the_bundled_recipe_and_enter_presses_no_button(qtbot) -> None:
    from PySide6.QtWidgets import QPushButton

    from unetpp_gui.core.metadata import read_metadata
    from unetpp_gui.resources import bundled_model_path

    dialog = TrainDialog()
    qtbot.addWidget(dialog)
    assert not any(b.autoDefault() or b.isDefault() for b in dialog.findChildren(QPushButton))
    # fits a 1366x768 screen (it needed 802 px before any thumbnail): data and settings scroll, Start stays in view
    assert dialog.minimumSizeHint().height() <= 600
    assert dialog.form_scroll.widget().isAncestorOf(dialog.out_edit)
    assert not dialog.form_scroll.isAncestorOf(dialog.start_button)
    config = read_metadata(bundled_model_path()).training["config"]
    recipe = {"deep_supervision": True, "loss": "bce_dice", "lr_schedule": "cosine"}
    assert {k: config[k] for k in recipe} == recipe  # the bundled model's own recipe (every stage)
    # batch 8 and learning rate 1e-3 are its from-scratch stage (MODEL_CARD.md, stage 1); later stages fine-tuned
    assert dialog.deep.isChecked() and dialog.loss.currentText() == "bce_dice"
    assert dialog.schedule.currentText() == "cosine" and dialog.batch.value() == 8
    assert dialog.lr.value() == 1e-3 and dialog.empty_fraction.value() == 0.3 and dialog.filters.value() == 16
    args = dialog.arguments()
    assert args[args.index("--lr-schedule") + 1] == "cosine" and args[args.index("--empty-fraction") + 1] == "0.3"
    assert Path(dialog.out_edit.text()).parent.name == "models" and str(Path.home()) in dialog.out_edit.text()
    assert not {"--crop-size", "--context-slices", "--ema"} & set(args)  # whole 2-D slices, no average, unless asked
    dialog.crop.setValue(128)
    dialog.context.setValue(2)
    dialog.ema.setChecked(True)
    args = dialog.arguments()
    assert args[args.index("--crop-size") + 1] == "128" and args[args.index("--context-slices") + 1] == "2"
    assert args[args.index("--ema") + 1] == "0.995"
    tuned = TrainDialog(current_model=str(bundled_model_path()))  # fine-tuning keeps the current model's input
    qtbot.addWidget(tuned)
    tuned.context.setValue(1)
    tuned.finetune.setChecked(True)
    assert not tuned.context.isEnabled() and "--context-slices" not in tuned.arguments()
    tuned.finetune.setChecked(False)
    assert tuned.context.isEnabled() and "--context-slices" in tuned.arguments()


def test_scan_reports_progress_and_can_be_stopped(qtbot, tmp_path: Path) -> None:
    import numpy as np

    from conftest import save_png
    from unetpp_gui.core.phantom import phantom

    for p in range(2):
        for i in range(120):
            img, mask = phantom(32, seed=i)
            save_png(tmp_path / "d" / f"P{p}" / f"s{i}.png", img)
            save_png(tmp_path / "d" / f"P{p}" / f"s{i}_mask.png", mask.astype(np.uint8) * 255)
    dialog = TrainDialog()
    qtbot.addWidget(dialog)
    seen: list[str] = []
    with qtbot.waitSignal(dialog.scanned, timeout=WAIT):
        worker = _scan(dialog, tmp_path / "d")
        worker.yielded.connect(lambda _p: seen.append(dialog.scan_label.text()))
    assert any("of 240 image/mask pairs checked" in t for t in seen)
    assert dialog.scan["pairs"] == 240 and dialog.scan["images"] == 240 and dialog.scan["patients"] == 2
    with qtbot.waitSignal(dialog.scanned, timeout=WAIT):
        _scan(dialog, tmp_path / "d")
        dialog.cancel_scan()
    assert dialog.scan_label.text() == "Scan cancelled." and not dialog.scan_cancel.isVisible()


def test_training_process_reports_a_refused_run_and_its_end(qtbot, tmp_path: Path) -> None:
    """The process wrapper on its own: a real child that refuses its arguments says why, as an event."""
    from unetpp_gui.ui.training_process import TrainingProcess, cancel_file_for

    runner = TrainingProcess()
    logs: list[str] = []
    runner.log.connect(logs.append)
    out = tmp_path / "m.h5"
    (tmp_path / "empty").mkdir()
    with qtbot.waitSignal(runner.finished, timeout=WAIT) as done:
        command = runner.start(["train", "--data", str(tmp_path / "empty"), "--out", str(out), "--progress-json",
                                "--cancel-file", str(cancel_file_for(out))], cancel_file_for(out))
        assert command.startswith("$ ") and runner.running
    kind, code = done.args
    assert kind == "error" and code == 2 and not runner.running
    assert runner.result["event"] == "error" and "at least 2 patients" in runner.result["message"]
    assert [e["event"] for e in runner.events] == ["error"]
    assert not cancel_file_for(out).exists() and not out.exists()
