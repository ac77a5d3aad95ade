"""Image / mask / overlay panels: three pyqtgraph views with linked zoom and pan."""

from __future__ import annotations

from typing import Callable

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, Signal
from PySide6.QtWidgets import QVBoxLayout, QWidget

from unetpp_gui.core.overlay import GT_COLOR, contour
from unetpp_gui.ui.paint_gate import after_next_paint

pg.setConfigOptions(imageAxisOrder="row-major", antialias=False)

TITLES = ("Image", "Mask", "Overlay")
LAYOUTS = ("side", "single", "grid")


class CountingImageItem(pg.ImageItem):
    """An image item whose histogram (for the window/level strip, redrawn with every new slice) counts 8-bit
    values instead of sorting them: pyqtgraph's :meth:`getHistogram` hands numpy explicit bin edges, which
    makes it sort the pixels (about 3 ms per slice on a 2-core AVX2 CPU, on the GUI thread); ``np.bincount``
    gives the same bins and counts in a fraction of that. Other data and options take pyqtgraph's way."""

    def getHistogram(self, bins="auto", step="auto", perChannel=False, targetImageSize=200, **kwargs):
        image = self.image
        if (bins != "auto" or step != "auto" or perChannel or kwargs or image is None or image.size == 0
                or image.dtype != np.uint8):
            return super().getHistogram(bins, step, perChannel, targetImageSize, **kwargs)
        rows, cols = (max(1, -(-n // targetImageSize)) for n in image.shape[:2])
        counts = np.bincount(image[::rows, ::cols].ravel(), minlength=256)
        present = np.flatnonzero(counts)
        lo, hi = int(present[0]), int(present[-1])
        if lo == hi:  # one value: pyqtgraph's two bins, the second empty
            return np.array([lo, lo + 1]), np.array([counts[lo], 0])
        return np.arange(lo, hi + 1), counts[lo:hi + 1]


class ImagePanels(QWidget):
    """Shows one slice; emits a cursor read-out string as the mouse moves over any panel."""

    hovered = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.glw = pg.GraphicsLayoutWidget()
        self.glw.setBackground("#202124")
        self.titles = []
        self.views: list[pg.ViewBox] = []
        for title in TITLES:
            self.titles.append(pg.LabelItem(title, color="#e8eaed", size="11pt"))
            view = pg.ViewBox(lockAspect=True, invertY=True, enableMenu=False)
            view.setDefaultPadding(0.0)
            self.views.append(view)
        for view in self.views[1:]:
            view.setXLink(self.views[0])
            view.setYLink(self.views[0])
        self.image_item = CountingImageItem()
        self.gt_item = pg.ImageItem()
        self.mask_item = pg.ImageItem()
        self.overlay_item = pg.ImageItem()
        self.views[0].addItem(self.image_item)
        self.views[0].addItem(self.gt_item)
        self.views[1].addItem(self.mask_item)
        self.views[2].addItem(self.overlay_item)
        # Window/level for the image panel: a slim strip under the panels (drag the region or its ends).
        self.levels = pg.HistogramLUTItem(image=self.image_item, orientation="horizontal")
        self.levels.setMaximumHeight(72)
        self.heat_lut = pg.colormap.get("inferno").getLookupTable(nPts=256)
        self.layout_name, self.single = "side", 2
        self.set_layout("side")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.glw)
        self.glw.scene().sigMouseMoved.connect(self._on_mouse)
        self.image: np.ndarray | None = None
        self.prob_q: np.ndarray | None = None
        self.mask: np.ndarray | None = None
        self.overlay: np.ndarray | None = None
        self._shape: tuple[int, int] | None = None

    def after_first_paint(self, callback: Callable[[], None], fallback_ms: int = 500) -> None:
        """Call ``callback`` once, as soon as the views have next been painted (or after ``fallback_ms``
        where no paint comes, e.g. a window never shown): the window starts its first prediction job only
        after the panels' first paint, which costs 30-50 ms on 2 cores and, competing with a starting job,
        stalled the GUI for 50-60 ms."""
        after_next_paint(self.glw.viewport(), callback, fallback_ms)

    def showEvent(self, event: object) -> None:
        """Shown again (the window's start page swapped for the panels): the graphics view missed the
        resizes made while it was hidden, so lay its grid out for its size now."""
        super().showEvent(event)
        self.glw.resizeEvent(None)

    # ----- layout and zoom --------------------------------------------------------------------------
    def set_layout(self, name: str, single: int | None = None) -> None:
        """``side``: three panels in a row; ``single``: one large panel (``single`` = 0 image, 1 mask,
        2 overlay); ``grid``: 2x2 (image, mask / overlay, levels)."""
        if name not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}")
        if single is not None:
            self.single = single
        ci = self.glw.ci
        for item in [*self.titles, *self.views, self.levels]:
            if item in ci.items:
                ci.removeItem(item)
        for item in [*self.titles, *self.views]:
            item.hide()
        if name == "side":
            places = {0: (0, 0), 1: (0, 1), 2: (0, 2)}
            levels = (2, 0, 1, 3)
        elif name == "grid":
            places = {0: (0, 0), 1: (0, 1), 2: (2, 0)}
            levels = (4, 0, 1, 2)
        else:
            places = {self.single: (0, 0)}
            levels = (2, 0, 1, 1)
        for i, (row, col) in places.items():
            ci.addItem(self.titles[i], row=row, col=col)
            ci.addItem(self.views[i], row=row + 1, col=col)
            self.titles[i].show()
            self.views[i].show()
        row, col, rowspan, colspan = levels
        ci.addItem(self.levels, row=row, col=col, rowspan=rowspan, colspan=colspan)
        grid = ci.layout
        for r in range(grid.rowCount()):  # the panels' rows take the height; titles and levels stay slim
            grid.setRowStretchFactor(r, 0)
        for r in {place[0] + 1 for place in places.values()}:
            grid.setRowStretchFactor(r, 1)
        for c in range(grid.columnCount()):
            grid.setColumnStretchFactor(c, 1 if c < (1 if name == "single" else 2 if name == "grid" else 3) else 0)
        self.layout_name = name
        self.glw.resizeEvent(None)  # taking items out shrank the grid to its minimum: give it the view's size

    def fit(self) -> None:
        """Show the whole slice."""
        self._visible_view().autoRange(padding=0.0)

    def zoom(self, factor: float) -> None:
        """Zoom all panels about their centre (factor > 1 enlarges)."""
        view = self._visible_view()
        view.scaleBy((1.0 / factor, 1.0 / factor))

    def actual_size(self) -> None:
        """One slice pixel per screen pixel, centred where the view is centred now."""
        view = self._visible_view()
        rect = view.viewRect()
        size = view.size()
        cx, cy = rect.center().x(), rect.center().y()
        w, h = max(size.width(), 1.0), max(size.height(), 1.0)
        view.setRange(xRange=(cx - w / 2, cx + w / 2), yRange=(cy - h / 2, cy + h / 2), padding=0.0)

    def scale(self) -> float:
        """Screen pixels per slice pixel in the visible panels."""
        view = self._visible_view()
        return float(view.size().width()) / max(view.viewRect().width(), 1e-9)

    def _visible_view(self) -> pg.ViewBox:
        return next((v for v in self.views if v.isVisible()), self.views[0])

    def show_slice(self, image: np.ndarray, gt: np.ndarray | None, show_gt: bool) -> None:
        """A new slice: set the image (keeping window/level) and fit the view if the size changed."""
        self.image = image
        first = self._shape is None
        self.image_item.setImage(image, autoLevels=first)
        if first:
            self.levels.setLevels(0, 255)
        self.set_ground_truth(gt, show_gt)
        if self._shape != image.shape[:2]:
            self._shape = image.shape[:2]
            self.fit()

    def set_ground_truth(self, gt: np.ndarray | None, show: bool) -> None:
        if gt is None or not show:
            self.gt_item.clear()
            return
        rgba = np.zeros(gt.shape + (4,), np.uint8)
        edge = contour(gt)
        rgba[edge, :3] = GT_COLOR
        rgba[edge, 3] = 255
        self.gt_item.setImage(rgba, autoLevels=False, levels=(0, 255))

    def show_result(self, prob_q: np.ndarray | None, mask: np.ndarray | None, overlay: np.ndarray | None,
                    view: str = "mask", std_q: np.ndarray | None = None) -> None:
        """``view``: "mask", "probability" or "uncertainty" (spread of the TTA passes)."""
        self.prob_q, self.mask, self.overlay = prob_q, mask, overlay
        if prob_q is None or mask is None or overlay is None:
            self.mask_item.clear()
            self.overlay_item.clear()
            return
        if view == "probability":
            self.mask_item.setImage(prob_q, lut=self.heat_lut, levels=(0, 255), autoLevels=False)
            self.titles[1].setText("Probability")
        elif view == "uncertainty" and std_q is not None:
            self.mask_item.setImage(std_q, lut=self.heat_lut, levels=(0, 128), autoLevels=False)
            self.titles[1].setText("Uncertainty (TTA spread)")
        else:
            self.mask_item.setImage(mask.astype(np.uint8) * 255, lut=None, levels=(0, 255), autoLevels=False)
            self.titles[1].setText("Mask")
        self.overlay_item.setImage(overlay, autoLevels=False, levels=(0, 255))

    def warm_up(self) -> None:
        """Lay out and draw every view once, off screen, with blank data while the app is idle: the first
        layout and paint of the views cost tens of milliseconds, which would otherwise stall the GUI when
        the panels first appear and on the first slice, while a prediction job competes for the CPU.
        Rendering into a pixmap works while the panels are hidden behind the start page."""
        blank = np.zeros((256, 256, 3), np.uint8)
        self.image_item.setImage(blank, autoLevels=False, levels=(0, 255))
        self.mask_item.setImage(blank[..., 0], lut=None, autoLevels=False, levels=(0, 255))
        self.overlay_item.setImage(blank, autoLevels=False, levels=(0, 255))
        self.fit()
        self.grab()

    def clear(self) -> None:
        for item in (self.image_item, self.gt_item, self.mask_item, self.overlay_item):
            item.clear()
        self.image = self.prob_q = self.mask = self.overlay = None

    def _on_mouse(self, pos: QPointF) -> None:
        if self.image is None:
            return
        for view in self.views:
            if view.sceneBoundingRect().contains(pos):
                p = view.mapSceneToView(pos)
                x, y = int(np.floor(p.x())), int(np.floor(p.y()))
                h, w = self.image.shape[:2]
                if 0 <= x < w and 0 <= y < h:
                    r, g, b = (int(v) for v in self.image[y, x, :3])
                    text = f"x {x}  y {y}  RGB ({r}, {g}, {b})"
                    if self.prob_q is not None:
                        text += f"  p {self.prob_q[y, x] / 255:.3f}"
                    self.hovered.emit(text)
                return
