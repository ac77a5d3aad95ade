"""View → Architecture: the loaded model drawn as the UNet++ grid of nodes X_i_j."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QImage, QPainter, QPen
from PySide6.QtWidgets import (
    QDialog, QFileDialog, QGraphicsEllipseItem, QGraphicsScene, QGraphicsView, QHBoxLayout, QLabel,
    QListWidget, QPushButton, QVBoxLayout, QWidget,
)

from unetpp_gui.core.architecture import EDGE_COLORS, Grid, extract_grid, layout, to_svg

RADIUS = 26.0


class _NodeItem(QGraphicsEllipseItem):
    def __init__(self, node: Any, x: float, y: float, on_click: Any) -> None:
        super().__init__(x - RADIUS, y - RADIUS, 2 * RADIUS, 2 * RADIUS)
        self.node, self.on_click = node, on_click
        self.setBrush(QBrush(QColor("#fdf1d6")))
        self.setPen(QPen(QColor("#b07d2b"), 1.5))
        self.setAcceptHoverEvents(True)
        shape = "×".join("?" if s is None else str(s) for s in node.shape[1:])
        self.setToolTip(f"{node.name}\noutput {shape}\n{node.params:,} parameters\n"
                        f"{node.flops / 1e9:.2f} GFLOP/slice\nlayers: {', '.join(node.layers)}")

    def hoverEnterEvent(self, event: Any) -> None:
        self.setBrush(QBrush(QColor("#ffd67a")))
        super().hoverEnterEvent(event)

    def hoverLeaveEvent(self, event: Any) -> None:
        self.setBrush(QBrush(QColor("#fdf1d6")))
        super().hoverLeaveEvent(event)

    def mousePressEvent(self, event: Any) -> None:
        self.on_click(self.node)
        super().mousePressEvent(event)


class ArchitectureDialog(QDialog):
    def showEvent(self, event: Any) -> None:
        super().showEvent(event)
        self._fit()

    def resizeEvent(self, event: Any) -> None:
        super().resizeEvent(event)
        self._fit()

    def _fit(self) -> None:
        """Scale the grid to fill the view."""
        if self.grid.is_grid:
            rect = self.scene.itemsBoundingRect().adjusted(-30, -30, 30, 30)
            self.view.fitInView(rect, Qt.KeepAspectRatio)

    def __init__(self, model: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"Architecture — {model.name}")
        self.keras_model = model.network()  # loaded already: MainWindow.show_architecture
        self.grid: Grid = extract_grid(self.keras_model)
        self.scene = QGraphicsScene(self)
        self.view = QGraphicsView(self.scene)
        self.view.setRenderHint(QPainter.Antialiasing)
        self.details = QLabel("Hover or click a node.")
        self.details.setWordWrap(True)
        self.details.setMinimumWidth(240)
        self.details.setAlignment(Qt.AlignTop)
        totals = QLabel(f"{self.grid.total_params:,} parameters · {self.grid.total_flops / 1e9:.1f} GFLOP per slice · "
                        f"{len(self.grid.nodes)} nodes, {len(self.grid.edges)} connections")
        png = QPushButton("Export PNG…")
        svg = QPushButton("Export SVG…")
        png.clicked.connect(lambda: self._export("png"))
        svg.clicked.connect(lambda: self._export("svg"))
        top = QHBoxLayout()
        if self.grid.is_grid:
            self._draw()
            top.addWidget(self.view, 1)
        else:  # not UNet-like: a readable list of layers
            self.layer_list = QListWidget()
            self.layer_list.addItems(self.grid.layers)
            top.addWidget(self.layer_list, 1)
            totals.setText(totals.text() + " · no X_i_j nodes found: showing the layer list")
        top.addWidget(self.details)
        buttons = QHBoxLayout()
        buttons.addWidget(totals, 1)
        buttons.addWidget(png)
        buttons.addWidget(svg)
        layout_ = QVBoxLayout(self)
        layout_.addLayout(top, 1)
        layout_.addLayout(buttons)
        self.resize(1000, 620)

    def _draw(self) -> None:
        pos = layout(self.grid)
        for src, dst, kind in self.grid.edges:
            (x1, y1), (x2, y2) = pos[src], pos[dst]
            pen = QPen(QColor(EDGE_COLORS[kind]), 2 if kind != "skip" else 1.2)
            if kind == "skip":
                pen.setStyle(Qt.DashLine)
            self.scene.addLine(x1, y1, x2, y2, pen)
        self.node_items = {}
        for key, node in self.grid.nodes.items():
            x, y = pos[key]
            item = _NodeItem(node, x, y, self._show)
            self.scene.addItem(item)
            self.node_items[key] = item
            label = self.scene.addText(node.name)
            label.setPos(x - label.boundingRect().width() / 2, y - 18)
            ch = self.scene.addText(f"{node.filters} ch")
            ch.setDefaultTextColor(QColor("#555"))
            ch.setPos(x - ch.boundingRect().width() / 2, y - 2)
        for name, key in self.grid.heads:
            x, y = pos[key]
            t = self.scene.addText(f"▲ {name}")
            t.setDefaultTextColor(QColor("#c5221f"))
            t.setPos(x - t.boundingRect().width() / 2, y - RADIUS - 26)
        legend = self.scene.addText("blue: down-sampling · green: up-sampling · grey dashed: dense skip connections")
        ys = [p[1] for p in pos.values()]
        legend.setPos(0, max(ys) + 40)

    def _show(self, node: Any) -> None:
        shape = " × ".join("?" if s is None else str(s) for s in node.shape[1:])
        self.details.setText(f"<b>{node.name}</b><br>level {node.i}, column {node.j}<br>output {shape}<br>"
                             f"{node.params:,} parameters<br>{node.flops / 1e9:.2f} GFLOP per slice<br>"
                             f"layers:<br>{'<br>'.join(node.layers)}")

    def render_png(self, path: str | Path) -> bool:
        rect: QRectF = self.scene.itemsBoundingRect().adjusted(-20, -20, 20, 20)
        image = QImage(int(rect.width()), int(rect.height()), QImage.Format_ARGB32)
        image.fill(QColor("white"))
        painter = QPainter(image)
        painter.setRenderHint(QPainter.Antialiasing)
        self.scene.render(painter, QRectF(image.rect()), rect)
        painter.end()
        return image.save(str(path))

    def write_svg(self, path: str | Path) -> None:
        from unetpp_gui.core.atomic import atomic_write_bytes

        atomic_write_bytes(path, to_svg(self.grid, self.keras_model.name).encode())

    def _export(self, kind: str) -> None:
        path, _ = QFileDialog.getSaveFileName(self, f"Export {kind.upper()}", f"architecture.{kind}",
                                              f"{kind.upper()} (*.{kind})")
        if path:
            self.render_png(path) if kind == "png" else self.write_svg(path)
