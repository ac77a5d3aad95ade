"""Results panel and threshold / display controls."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QCheckBox, QColorDialog, QComboBox, QDoubleSpinBox, QFormLayout, QGroupBox, QLabel,
    QPushButton, QSlider, QVBoxLayout, QWidget,
)
from superqt import QLabeledDoubleSlider

from unetpp_gui import RESEARCH_NOTICE
from unetpp_gui.core.overlay import DEFAULT_COLOR
from unetpp_gui.core.postprocess import Derived
from unetpp_gui.core.review import DECISION_PERCENT_DECIMALS, PIXEL_DECIMALS, PIXEL_RANGE, ThresholdModel
from unetpp_gui.core.store import Thresholds

BADGE_STYLE = "QLabel {{ background: {bg}; color: white; font-size: 20pt; font-weight: bold; padding: 10px; border-radius: 6px; }}"


class WrappedLabel(QLabel):
    """A word-wrapped label whose minimum height is what its lines need at its width. A layout's minimum does
    not ask a label for its height at a width, so in a short window the Result panel counted one line for a
    two-line text and squeezed every row, cutting the descenders of the text."""

    def __init__(self, text: str = "", parent: QWidget | None = None) -> None:
        super().__init__(text, parent)
        self.setWordWrap(True)

    def setText(self, text: str) -> None:  # noqa: N802 (Qt's name)
        super().setText(text)
        self._fit()

    def resizeEvent(self, event: Any) -> None:  # noqa: N802
        super().resizeEvent(event)
        self._fit()

    def _fit(self) -> None:
        need = self.heightForWidth(max(1, self.width()))
        if need > 0 and need != self.minimumHeight():
            self.setMinimumHeight(need)


class ResultsPanel(QGroupBox):
    """Decision badge and the numbers behind it."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Result", parent)
        self.badge = QLabel("—")
        self.badge.setAlignment(Qt.AlignCenter)
        self.badge.setStyleSheet(BADGE_STYLE.format(bg="#5f6368"))
        self.ratio = QLabel("—")
        self.pixels = QLabel("—")
        self.max_prob = QLabel("—")
        self.dice = QLabel("—")
        self.iou = QLabel("—")
        self.filtered = QLabel("—")
        self.filtered.setToolTip("Pixels the patient 3-D filter removed from this slice: specks not connected "
                                 "to the patient's main lesion across neighbouring slices (Model menu).")
        self.model = WrappedLabel("Model: —")
        self.warning = WrappedLabel("")
        self.warning.setStyleSheet("color: #b06000; font-weight: bold;")
        self.warning.hide()
        form = QFormLayout()
        form.addRow("Tumour area ratio", self.ratio)
        form.addRow("Mask pixels", self.pixels)
        form.addRow("Max probability", self.max_prob)
        form.addRow("Dice vs ground truth", self.dice)
        form.addRow("IoU vs ground truth", self.iou)
        form.addRow("3-D filter", self.filtered)
        form.addRow(self.model)  # the whole panel's width: name, precision and runtime fit on one line
        notice = WrappedLabel(RESEARCH_NOTICE)
        notice.setStyleSheet("color: #b06000; font-style: italic;")
        layout = QVBoxLayout(self)
        layout.addWidget(self.badge)
        layout.addWidget(self.warning)
        layout.addLayout(form)
        layout.addWidget(notice)

    def show_derived(self, d: Derived | None, error: str | None = None, filtered: str = "—",
                     warning: str | None = None) -> None:
        self.filtered.setText(filtered)
        self.warning.setText(f"⚠ {warning}" if warning else "")
        self.warning.setVisible(bool(warning))
        if error:
            self.badge.setText("ERROR")
            self.badge.setStyleSheet(BADGE_STYLE.format(bg="#8d6e63"))
            self.badge.setToolTip(error)
            for label in (self.ratio, self.pixels, self.max_prob, self.dice, self.iou):
                label.setText("—")
            return
        if d is None:
            self.badge.setText("…")
            self.badge.setStyleSheet(BADGE_STYLE.format(bg="#5f6368"))
            return
        self.badge.setToolTip("")
        self.badge.setText("TUMOUR" if d.tumour else "NO TUMOUR")
        self.badge.setStyleSheet(BADGE_STYLE.format(bg="#c5221f" if d.tumour else "#188038"))
        self.ratio.setText(f"{d.area_ratio * 100:.3f} %")
        self.pixels.setText(f"{d.mask_pixels:,}")
        self.max_prob.setText(f"{d.max_prob:.3f}")
        self.dice.setText("no ground truth" if d.dice is None else f"{d.dice:.3f}")
        self.iou.setText("no ground truth" if d.iou is None else f"{d.iou:.3f}")

    def text(self) -> str:
        """Plain-text copy of what the panel shows (for the clipboard)."""
        return (f"Decision: {self.badge.text()}\nTumour area ratio: {self.ratio.text()}\n"
                f"Mask pixels: {self.pixels.text()}\nMax probability: {self.max_prob.text()}\n"
                f"Dice: {self.dice.text()}\nIoU: {self.iou.text()}\n3-D filter: {self.filtered.text()}\n"
                + (f"Warning: {self.warning.text()}\n" if self.warning.text() else "")
                + f"{self.model.text()}\n{RESEARCH_NOTICE}")  # the label reads "Model: ..." already


class Controls(QGroupBox):
    """Edits a :class:`ThresholdModel` and the display options; ``changed`` fires on every change of
    either (no model call needed). The thresholds live in the model, the widgets only show them."""

    changed = Signal()
    reset_requested = Signal()

    def __init__(self, thresholds: ThresholdModel | None = None, parent: QWidget | None = None) -> None:
        super().__init__("Thresholds and display", parent)
        self.model = thresholds or ThresholdModel()
        self.pixel = QLabeledDoubleSlider(Qt.Horizontal)  # slider and its value box kept in step by superqt
        self.pixel.setRange(*PIXEL_RANGE)
        self.pixel.setSingleStep(10 ** -PIXEL_DECIMALS)
        self.pixel.setDecimals(PIXEL_DECIMALS)
        self.pixel.setToolTip("A pixel is tumour when its probability exceeds this.")
        self.decision_spin = QDoubleSpinBox()
        self.decision_spin.setRange(0.0, 100.0)
        self.decision_spin.setDecimals(DECISION_PERCENT_DECIMALS)
        self.decision_spin.setSingleStep(0.01)
        self.decision_spin.setSuffix(" %")
        self.decision_spin.setToolTip("A slice is called TUMOUR when the mask covers more than this share of it.")
        self.opacity = QSlider(Qt.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(45)
        self.mode = QComboBox()
        self.mode.addItems(["fill", "contour"])
        self.color_button = QPushButton()
        self.mask_view = QComboBox()
        self.mask_view.addItems(["mask", "probability", "uncertainty"])
        self.mask_view.setToolTip("Middle panel: binary mask, probability heat map, or the spread of the "
                                  "test-time-augmented passes (Model → Test-time augmentation)")
        self.show_gt = QCheckBox("Show ground-truth contour (green)")
        self.show_gt.setChecked(True)
        reset = QPushButton("Reset to the model's calibrated thresholds")
        self.color = QColor(*DEFAULT_COLOR)
        self._update_color_button()

        form = QFormLayout()
        form.addRow("Pixel threshold", self.pixel)
        form.addRow("Decision threshold", self.decision_spin)
        form.addRow("Overlay opacity", self.opacity)
        form.addRow("Overlay style", self.mode)
        form.addRow("Overlay colour", self.color_button)
        form.addRow("Middle panel", self.mask_view)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.show_gt)
        layout.addWidget(reset)

        self._show(self.model.value)
        self.model.connect(self._on_model)
        self.pixel.valueChanged.connect(lambda v: self.model.set(pixel=v))
        self.decision_spin.valueChanged.connect(lambda v: self.model.set(decision=v / 100.0))
        self.opacity.valueChanged.connect(lambda _: self.changed.emit())
        self.mode.currentIndexChanged.connect(lambda _: self.changed.emit())
        self.mask_view.currentIndexChanged.connect(lambda _: self.changed.emit())
        self.show_gt.toggled.connect(lambda _: self.changed.emit())
        self.color_button.clicked.connect(self._pick_color)
        reset.clicked.connect(self.reset_requested.emit)

    def _on_model(self, value: Thresholds) -> None:
        self._show(value)
        self.changed.emit()

    def _show(self, value: Thresholds) -> None:
        """Put the model's value in the widgets without their edits echoing back into it."""
        for widget, shown in ((self.pixel, value.pixel), (self.decision_spin, value.decision * 100.0)):
            widget.blockSignals(True)
            widget.setValue(shown)
            widget.blockSignals(False)

    def _pick_color(self) -> None:
        color = QColorDialog.getColor(self.color, self, "Overlay colour")
        if color.isValid():
            self.set_color(color)

    def set_color(self, color: QColor) -> None:
        self.color = color
        self._update_color_button()
        self.changed.emit()

    def _update_color_button(self) -> None:
        self.color_button.setStyleSheet(f"background: {self.color.name()}; min-height: 18px;")
        self.color_button.setText(self.color.name())

    @property
    def pixel_threshold(self) -> float:
        return self.model.value.pixel

    @property
    def decision_threshold(self) -> float:
        return self.model.value.decision

    def set_thresholds(self, pixel: float, decision: float) -> None:
        self.model.set(pixel, decision)

    @property
    def rgb(self) -> tuple[int, int, int]:
        return (self.color.red(), self.color.green(), self.color.blue())
