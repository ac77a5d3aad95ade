"""Training → Train model…: retrain in a separate process with live curves, cancel and resume.

The training module runs as a child process (``python -m training train`` from source, the
executable itself with ``UNETPP_TRAINING_CHILD=1`` when frozen), so a crash or a cancel never takes
the viewer down and training never competes with the GUI for the interpreter. Progress arrives as
JSON lines on the child's stdout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QProcess, Qt, Signal
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import (
    QCheckBox, QComboBox, QDialog, QDoubleSpinBox, QFileDialog, QFormLayout, QFrame, QGroupBox, QHBoxLayout,
    QLabel, QLineEdit, QPlainTextEdit, QPushButton, QScrollArea, QSpinBox, QStyle, QVBoxLayout, QWidget,
)

from training.train import last_path_for
from training.options import ARCHITECTURES, LOSS_NAMES, LR_SCHEDULES
from unetpp_gui import workers
from unetpp_gui.core.model_io import cpu_supports_bf16
from unetpp_gui.ui.training_process import TrainingProcess, cancel_file_for
from unetpp_gui.ui.progress_bar import LazyProgressBar
from unetpp_gui.ui.screen import screen_share


class EpochAxis(pg.AxisItem):
    """A bottom axis that marks whole epochs only (pyqtgraph's own would mark 1.5, 2.5 ... in a short run)."""

    def tickValues(self, minVal: float, maxVal: float, size: float) -> list:
        levels = [(max(spacing, 1.0), [v for v in values if float(v).is_integer()])
                  for spacing, values in super().tickValues(minVal, maxVal, size)]
        return [(spacing, values) for spacing, values in levels if values]


def dialog_size() -> tuple[int, int]:
    """1100 x 900, or 92 % of the screen's free area where that is smaller."""
    share = screen_share()
    return (1100, 900) if share is None else (min(1100, share[0]), min(900, share[1]))


class TrainDialog(QDialog):
    use_model = Signal(str)  # path of the trained model
    finished_training = Signal(str)  # final status: done / cancelled / stopped_early / error / crashed
    scanned = Signal()  # a data scan ended (result, problem or cancel): scan_label says which

    def __init__(self, current_model: str | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Train model")
        self.setAcceptDrops(True)
        self.current_model = current_model
        self.scan: Any = None
        self._scan_worker: Any = None
        self.runner = TrainingProcess(self)  # owns the child process; the dialog only draws what it reports
        self.runner.event.connect(self._on_event)
        self.runner.log.connect(self._append_log)
        self.runner.finished.connect(self._on_finished)
        self._build()
        for button in self.findChildren(QPushButton):  # Enter in a field must not press Browse (or Start)
            button.setAutoDefault(False)
            button.setDefault(False)
        self.resize(*dialog_size())

    # ----- layout --------------------------------------------------------------------------------
    def _build(self) -> None:
        """Data and settings scroll above the run buttons, so the dialog fits a 1366x768 screen (they need about
        940 px of height once thumbnails show) and Start stays in view."""
        form = QWidget()
        form_layout = QVBoxLayout(form)
        form_layout.setContentsMargins(0, 0, 0, 0)
        form_layout.addWidget(self._data_box())
        form_layout.addWidget(self._settings_box())
        form_layout.addStretch(1)  # a tall dialog leaves the space below the boxes, not between their rows
        self.form_scroll = QScrollArea()
        self.form_scroll.setWidget(form)
        self.form_scroll.setWidgetResizable(True)
        self.form_scroll.setFrameShape(QFrame.NoFrame)
        self.form_scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        bar = self.form_scroll.style().pixelMetric(QStyle.PM_ScrollBarExtent)
        self.form_scroll.setMinimumWidth(form.minimumSizeHint().width() + bar)
        left = QVBoxLayout()
        left.addWidget(self.form_scroll, 1)
        left.addLayout(self._run_buttons())
        top = QHBoxLayout(self)
        top.addLayout(left, 1)
        top.addLayout(self._progress_panel(), 1)
        self.epoch_x: list[int] = []
        self.loss_y: list[float] = []
        self.val_loss_y: list[float] = []
        self.dice_y: list[float] = []
        self.batch_x: list[int] = []
        self.batch_y: list[float] = []

    def _data_box(self) -> QGroupBox:
        """The data folder, its scan (count, cancel, problems) and thumbnails of a few pairs."""
        self.data_edit = QLineEdit()
        self.data_edit.setPlaceholderText("Folder with <name>.png + <name>_mask.png (or images/ + masks/); drop it here")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse_data)
        self.scan_cancel = QPushButton("Stop scanning")
        self.scan_cancel.clicked.connect(self.cancel_scan)
        self.scan_cancel.hide()
        self.data_edit.editingFinished.connect(self.scan_data)
        self.scan_label = QLabel("No data chosen.")
        self.scan_label.setWordWrap(True)
        self.problems = QPlainTextEdit()
        self.problems.setReadOnly(True)
        self.problems.setMaximumHeight(70)
        self.preview = QHBoxLayout()
        data_box = QGroupBox("Data")
        dl = QVBoxLayout(data_box)
        row = QHBoxLayout()
        row.addWidget(self.data_edit, 1)
        row.addWidget(browse)
        dl.addLayout(row)
        scan_row = QHBoxLayout()
        scan_row.addWidget(self.scan_label, 1)
        scan_row.addWidget(self.scan_cancel)
        dl.addLayout(scan_row)
        dl.addLayout(self.preview)
        dl.addWidget(self.problems)
        return data_box

    def _settings_box(self) -> QGroupBox:
        """Every training choice, defaulting to the bundled model's recipe (its MODEL_CARD.md)."""
        self.arch = QComboBox()
        self.arch.addItems(list(ARCHITECTURES))
        self.arch.setToolTip("UNet++ (nested dense skips) or the plain U-Net on the same blocks")
        self.filters = self._spin(4, 64, 16, "Filters at the top level; doubles per level. 16 suits a CPU.")
        self.image_size = self._spin(32, 512, 256, "Slices are resized to this square size.", step=16)
        self.deep = QCheckBox("Deep supervision (heads on X_0_1..X_0_4; allows pruned inference)")
        self.deep.setChecked(True)  # the defaults are the bundled model's recipe (its MODEL_CARD.md)
        self.epochs = self._spin(1, 500, 16, "Passes over the training data.")
        self.batch = self._spin(1, 64, 8, "Slices per step.")
        self.lr = QDoubleSpinBox()
        self.lr.setDecimals(5)
        self.lr.setRange(1e-5, 1e-1)
        self.lr.setSingleStep(1e-4)
        self.lr.setValue(1e-3)
        self.lr.setToolTip("Adam learning rate (the bundled model: 1e-3 with a cosine schedule; the prototype used "
                           "1e-4, constant).")
        self.schedule = QComboBox()
        self.schedule.addItems(list(LR_SCHEDULES))
        self.schedule.setToolTip("cosine: the learning rate decays to 5 % over the run; constant: as the prototype.")
        self.empty_fraction = QDoubleSpinBox()
        self.empty_fraction.setRange(0.05, 1.0)
        self.empty_fraction.setSingleStep(0.05)
        self.empty_fraction.setValue(0.3)
        self.empty_fraction.setToolTip("Share of the tumour-free training slices drawn each epoch (redrawn every "
                                       "epoch): every tumour slice is used, the many empty ones are sampled.")
        self.val_fraction = QDoubleSpinBox()
        self.val_fraction.setRange(0.05, 0.5)
        self.val_fraction.setSingleStep(0.05)
        self.val_fraction.setValue(0.2)
        self.val_fraction.setToolTip("Share of patients held out for validation (never split by slice).")
        self.loss = QComboBox()
        self.loss.addItems(list(LOSS_NAMES))
        self.loss.setCurrentText("bce_dice")
        self.loss.setToolTip("Binary cross-entropy (prototype) or BCE + Dice (better for small tumours).")
        self.augment = QCheckBox("Augmentation (flip, rotation, zoom, intensity)")
        self.augment.setChecked(True)
        self.normalize = QCheckBox("Per-channel intensity normalisation")
        self.normalize.setChecked(True)
        self.normalize.setToolTip(
            "Rescale each slice's channels so their 99th percentile matches the training data's: a dim FLAIR "
            "channel from another scanner is then not missed. Stored in the model; a current model that already "
            "has one keeps its own when fine-tuned.")
        self.mixed = QCheckBox("Mixed precision (bfloat16; CPUs with AVX512-BF16/AMX)")
        self.mixed.setChecked(cpu_supports_bf16())  # emulated bfloat16 is slower than float32
        self.finetune = QCheckBox("Start from the current model (fine-tune)")
        self.finetune.setEnabled(bool(self.current_model))
        self.crop = self._spin(0, 512, 0, "Train on random square crops of this size (0 = whole slices): a 128 crop "
                               "of a 256 slice costs about a quarter of the time; validation uses whole slices.",
                               step=16)
        self.context = self._spin(0, 3, 0, "2.5-D input: also read the FLAIR of this many slices before and after "
                                  "each slice of a patient folder as extra channels (0 = each slice alone). The "
                                  "model stores it and reads the neighbours from the slice's folder when it "
                                  "predicts; fine-tuning keeps the current model's input.")
        self.ema = QCheckBox("Average the weights over the last steps (EMA, momentum 0.995)")
        self.ema.setToolTip("Validation and the saved model use an exponential moving average of the weights: "
                            "steadier from epoch to epoch (the cross-validated U-Net recipe uses it).")
        self.max_slices = self._spin(0, 100000, 0, "Use at most this many slices per split (0 = all): for a quick trial.")
        self.out_edit = QLineEdit(str(default_output()))
        out_browse = QPushButton("…")
        out_browse.clicked.connect(self._browse_out)
        out_row = QHBoxLayout()
        out_row.addWidget(self.out_edit, 1)
        out_row.addWidget(out_browse)
        self.finetune.toggled.connect(lambda on: self.context.setEnabled(not on))  # the source's input wins
        form = QFormLayout()
        for label, w in (("Architecture", self.arch), ("Base filters", self.filters), ("Input size", self.image_size),
                         ("", self.deep), ("Epochs", self.epochs), ("Batch size", self.batch),
                         ("Learning rate", self.lr), ("Schedule", self.schedule),
                         ("Tumour-free slices per epoch", self.empty_fraction),
                         ("Validation share of patients", self.val_fraction), ("Loss", self.loss),
                         ("Crop size (0 = whole slices)", self.crop),
                         ("Neighbouring slices each side", self.context),
                         ("", self.augment), ("", self.ema), ("", self.normalize), ("", self.mixed),
                         ("", self.finetune),
                         ("Max slices (quick trial)", self.max_slices)):
            form.addRow(label, w)
        form.addRow("Output model", out_row)
        settings_box = QGroupBox("Settings")
        settings_box.setLayout(form)
        return settings_box

    def _run_buttons(self) -> QHBoxLayout:
        self.start_button = QPushButton("Start")
        self.resume_button = QPushButton("Resume last checkpoint")
        self.cancel_button = QPushButton("Cancel")
        self.use_button = QPushButton("Use this model")
        self.cancel_button.setEnabled(False)
        self.use_button.setEnabled(False)
        self.start_button.clicked.connect(lambda: self.start(resume=False))
        self.resume_button.clicked.connect(lambda: self.start(resume=True))
        self.cancel_button.clicked.connect(self.cancel)
        self.use_button.clicked.connect(self._use)
        self.out_edit.textChanged.connect(self._update_resume)
        self._update_resume()
        buttons = QHBoxLayout()
        for b in (self.start_button, self.resume_button, self.cancel_button, self.use_button):
            buttons.addWidget(b)
        return buttons

    def _progress_panel(self) -> QVBoxLayout:
        """Live curves (per epoch and per batch), progress, the run's summary and its log."""
        self.plot = pg.PlotWidget(title="Loss and validation Dice per epoch",
                                  axisItems={"bottom": EpochAxis("bottom")})
        self.plot.addLegend(offset=(-10, 10), brush=pg.mkBrush(0, 0, 0, 170))  # top right, readable over curves
        self.plot.setLabel("bottom", "epoch")
        self.curve_loss = self.plot.plot([], [], pen=pg.mkPen("#1a73e8", width=2), symbol="o", symbolSize=5, name="loss")
        self.curve_val_loss = self.plot.plot([], [], pen=pg.mkPen("#e37400", width=2), symbol="o", symbolSize=5,
                                             name="val loss")
        # Dice (0..1) on a right-hand axis of its own: on the loss axis (a deep-supervised loss reaches 5-7) it
        # was a flat line along the bottom
        self.plot.setLabel("left", "loss")
        self.plot.setLabel("right", "validation Dice")
        self.dice_view = pg.ViewBox()
        self.plot.scene().addItem(self.dice_view)
        self.plot.getAxis("right").linkToView(self.dice_view)
        self.dice_view.setXLink(self.plot.getPlotItem())
        self.dice_view.setYRange(0.0, 1.0, padding=0.02)
        self.dice_view.setMouseEnabled(x=False, y=False)
        self.curve_dice = pg.PlotDataItem([], [], pen=pg.mkPen("#188038", width=2), symbol="t", symbolSize=6,
                                          symbolBrush="#188038", name="val Dice")
        self.dice_view.addItem(self.curve_dice)
        self.plot.getPlotItem().legend.addItem(self.curve_dice, "val Dice")
        main_view = self.plot.getPlotItem().vb
        main_view.sigResized.connect(lambda vb: self.dice_view.setGeometry(vb.sceneBoundingRect()))
        self.batch_plot = pg.PlotWidget(title="Training loss per batch (smoothed)")
        self.batch_plot.setLabel("bottom", "step")
        self.curve_batch = self.batch_plot.plot([], [], pen=pg.mkPen("#1a73e8"))
        self.progress = LazyProgressBar()  # set at every batch, just before the curves redraw
        self.progress_label = QLabel("")
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(2000)
        self.summary = QLabel("")
        self.summary.setWordWrap(True)
        right = QVBoxLayout()
        right.addWidget(self.plot, 2)
        right.addWidget(self.batch_plot, 1)
        right.addWidget(self.progress)
        right.addWidget(self.progress_label)
        right.addWidget(self.summary)
        right.addWidget(self.log, 1)
        return right

    @staticmethod
    def _spin(lo: int, hi: int, value: int, tip: str, step: int = 1) -> QSpinBox:
        s = QSpinBox()
        s.setRange(lo, hi)
        s.setSingleStep(step)
        s.setValue(value)
        s.setToolTip(tip)
        return s

    # ----- data -----------------------------------------------------------------------------------
    def set_data(self, folder: str) -> None:
        self.data_edit.setText(folder)
        self.scan_data()

    def scan_data(self) -> Any:
        folder = self.data_edit.text().strip()
        if not folder:
            return None
        if not Path(folder).is_dir():
            self._data_problem(f"{folder} is not a folder.")
            return None
        self.cancel_scan()
        self.scan_label.setText("Scanning…")
        worker = workers.inspect_folder_worker(folder)
        worker.yielded.connect(self._on_scan_progress)
        worker.returned.connect(self._on_scan)
        worker.errored.connect(lambda e: self._data_problem(f"Could not read {folder}: {e}"))
        self._scan_worker = worker
        self.scan_cancel.show()
        worker.finished.connect(self.scan_cancel.hide)
        worker.start()
        return worker

    def cancel_scan(self) -> None:
        if self._scan_worker is not None:
            self._scan_worker.quit()
            self._scan_worker = None
            self.scan_label.setText("Scan cancelled.")
            self.scan_cancel.hide()
            self.scanned.emit()

    def _on_scan_progress(self, progress: tuple[int, int]) -> None:
        done, total = progress
        self.scan_label.setText(f"Scanning… {done:,} of {total:,} image/mask pairs checked")

    def _data_problem(self, text: str) -> None:
        self.scan = None
        self.scan_label.setText(f"<span style='color:#c5221f'>{text}</span>")
        self.start_button.setEnabled(False)
        self.scanned.emit()

    def _on_scan(self, report: Any) -> None:
        self._scan_worker = None
        if report is None:  # cancelled (cancel_scan said so)
            return
        result = vars(report)
        self.scan = result
        self.problems.setPlainText("\n".join(result["problems"][:200]) or "No problems found.")
        if result["pairs"] == 0:
            self._data_problem("No image/mask pairs found: each slice needs <name>_mask.png beside it "
                               "(or images/ and masks/ folders).")
            return
        if result["patients"] < 2:
            self._data_problem(f"{result['pairs']} pairs from one patient: validation needs slices from "
                               "at least 2 patients (one folder per patient).")
            return
        self.scan_label.setText(f"{result['images']} images, {result['pairs']} with masks, "
                                f"{result['patients']} patients, {result['tumour']} tumour slices; "
                                f"{len(result['problems'])} problem(s).")
        while self.preview.count():
            item = self.preview.takeAt(0)
            if item.widget():
                item.widget().deleteLater()
        for thumb in result["previews"]:
            label = QLabel()
            h, w = thumb.shape[:2]
            img = QImage(thumb.data, w, h, 3 * w, QImage.Format_RGB888).copy()
            label.setPixmap(QPixmap.fromImage(img))
            self.preview.addWidget(label)
        self.start_button.setEnabled(True)
        self.scanned.emit()

    # ----- running ---------------------------------------------------------------------------------
    def arguments(self, resume: bool = False) -> list[str]:
        out = self.out_edit.text().strip()
        args = ["train", "--data", self.data_edit.text().strip(), "--out", out, "--progress-json",
                "--cancel-file", str(self.cancel_file())]
        if resume:
            return args + ["--resume", str(last_path_for(Path(out))), "--epochs", str(self.epochs.value())]
        args += ["--architecture", self.arch.currentText(), "--base-filters", str(self.filters.value()),
                 "--image-size", str(self.image_size.value()), "--epochs", str(self.epochs.value()),
                 "--batch-size", str(self.batch.value()), "--learning-rate", str(self.lr.value()),
                 "--val-fraction", str(self.val_fraction.value()), "--loss", self.loss.currentText(),
                 "--lr-schedule", self.schedule.currentText(), "--empty-fraction", str(self.empty_fraction.value())]
        if self.deep.isChecked():
            args.append("--deep-supervision")
        if not self.augment.isChecked():
            args.append("--no-augment")
        if self.mixed.isChecked():
            args.append("--mixed-precision")
        finetune = self.finetune.isChecked() and bool(self.current_model)
        if self.normalize.isChecked():
            args += ["--normalize", "channel"]  # a fine-tuned model that has one keeps its own
        elif not finetune:
            args += ["--normalize", "none"]
        if finetune:
            args += ["--init-from", str(self.current_model)]
        if self.crop.value():
            args += ["--crop-size", str(self.crop.value())]
        if self.context.value() and not finetune:
            args += ["--context-slices", str(self.context.value())]
        if self.ema.isChecked():
            args += ["--ema", "0.995"]
        if self.max_slices.value():
            args += ["--max-slices", str(self.max_slices.value())]
        return args

    @property
    def proc(self) -> QProcess | None:
        """The running training process, if any."""
        return self.runner.proc

    @property
    def events(self) -> list[dict[str, Any]]:
        return self.runner.events

    @property
    def result(self) -> dict[str, Any]:
        return self.runner.result

    def cancel_file(self) -> Path:
        return cancel_file_for(self.out_edit.text().strip())

    def start(self, resume: bool = False) -> QProcess | None:
        out = self.out_edit.text().strip()
        if not out.endswith(".h5"):
            self.summary.setText("The output model must be a .h5 file.")
            return None
        try:
            Path(out).parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self.summary.setText(f"Cannot write to {Path(out).parent}: {exc}")
            return None
        for series in (self.epoch_x, self.loss_y, self.val_loss_y, self.dice_y, self.batch_x, self.batch_y):
            series.clear()
        self._redraw()
        self.log.appendPlainText(self.runner.start(self.arguments(resume), self.cancel_file()))
        self.start_button.setEnabled(False)
        self.resume_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.use_button.setEnabled(False)
        self.summary.setText("Training…")
        return self.runner.proc

    def cancel(self) -> None:
        """Ask the run to stop between batches (killed if it has not stopped in 30 s)."""
        if self.proc is None:
            return
        self.runner.cancel()
        self.summary.setText("Cancelling after the current batch…")

    def _on_event(self, ev: dict[str, Any]) -> None:
        kind = ev.get("event")
        if kind == "start":
            self.steps = int(ev["steps"])
            self.progress.setRange(0, int(ev["epochs"]) * self.steps)
            self._append_log(f"training on {ev['train_slices']} slices ({ev['train_patients']} patients), "
                             f"validating on {ev['val_slices']} ({ev['val_patients']} patients)")
        elif kind == "batch":
            step = (int(ev["epoch"]) - 1) * self.steps + int(ev["step"])
            self.progress.setValue(step)
            loss = float(ev["loss"])
            smooth = loss if not self.batch_y else 0.9 * self.batch_y[-1] + 0.1 * loss
            self.batch_x.append(step)
            self.batch_y.append(smooth)
            eta = ev.get("eta")
            self.progress_label.setText(f"epoch {ev['epoch']}/{ev['epochs']}, step {ev['step']}/{ev['steps']}, "
                                        f"elapsed {ev['elapsed']:.0f} s, ETA {'?' if eta is None else f'{eta:.0f} s'}")
            self._redraw()
        elif kind == "epoch":
            dice_key = next((k for k in ev if k.startswith("val_") and k.endswith("dice")), None)
            self.epoch_x.append(int(ev["epoch"]))
            self.loss_y.append(float(ev["loss"]))
            self.val_loss_y.append(float(ev.get("val_loss", np.nan)))
            self.dice_y.append(float(ev[dice_key]) if dice_key else np.nan)
            self._append_log(f"epoch {ev['epoch']}: loss {ev['loss']:.4f}, val loss {ev.get('val_loss', float('nan')):.4f}"
                             + (f", val Dice {ev[dice_key]:.4f}" if dice_key else ""))
            self._redraw()
        elif kind == "checkpoint":
            self._append_log(f"saved {ev['kind']} checkpoint (epoch {ev['epoch']}): {ev['path']}")

    def _redraw(self) -> None:
        self.curve_loss.setData(self.epoch_x, self.loss_y)
        self.curve_val_loss.setData(self.epoch_x, self.val_loss_y)
        self.curve_dice.setData(self.epoch_x, self.dice_y)
        self.curve_batch.setData(self.batch_x, self.batch_y)

    def _on_finished(self, kind: str, code: int) -> None:
        out = self.out_edit.text().strip()
        if kind == "error":
            text = f"Training could not start: {self.result.get('message')}"
        elif kind == "crashed":
            text = f"The training process ended unexpectedly (exit code {code}); see the log. Files on disk hold complete epochs only."
        else:
            best = self.result.get("best_dice")
            text = (f"{'Cancelled' if kind == 'cancelled' else 'Finished'} after {self.result.get('epochs_run', 0)} "
                    f"epoch(s). Best validation Dice: {'n/a' if best is None else f'{best:.4f}'} "
                    f"(epoch {self.result.get('best_epoch')}).")
            if self.result.get("best_path"):
                text += f"\nBest model: {self.result['best_path']}"
            if last_path_for(Path(out)).exists():
                text += f"\nResumable checkpoint: {last_path_for(Path(out))}"
        self.summary.setText(text)
        self.start_button.setEnabled(self.scan is not None)
        self.cancel_button.setEnabled(False)
        self.use_button.setEnabled(bool(self.result.get("best_path")) and Path(out).exists())
        self._update_resume()
        self.finished_training.emit(kind)

    def _use(self) -> None:
        self.use_model.emit(self.out_edit.text().strip())

    def _update_resume(self) -> None:
        self.resume_button.setEnabled(self.proc is None and last_path_for(Path(self.out_edit.text().strip())).exists())

    def _append_log(self, text: str) -> None:
        for line in text.rstrip().splitlines():
            if line.strip() and not line.startswith(("I0000", "WARNING: All log messages")):
                self.log.appendPlainText(line)

    def _browse_data(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Training data folder")
        if folder:
            self.set_data(folder)

    def _browse_out(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save model as", self.out_edit.text(), "Keras HDF5 (*.h5)")
        if path:
            self.out_edit.setText(path if path.endswith(".h5") else path + ".h5")

    def dragEnterEvent(self, event: Any) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: Any) -> None:
        for url in event.mimeData().urls():
            if url.isLocalFile() and Path(url.toLocalFile()).is_dir():
                self.set_data(url.toLocalFile())
                break
        event.acceptProposedAction()

    def closeEvent(self, event: Any) -> None:
        if self.proc is not None:
            self.cancel()
        super().closeEvent(event)


def default_output() -> Path:
    """Where a new model goes unless the user says otherwise: the user's application data folder."""
    from PySide6.QtCore import QStandardPaths

    base = QStandardPaths.writableLocation(QStandardPaths.AppDataLocation) or str(Path.home())
    return Path(base) / "models" / "unetpp_model.h5"

