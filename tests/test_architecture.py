"""Nested architecture view: the grid, the pictures, and the dialog."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from PySide6.QtCore import Qt

from unetpp_gui.core.architecture import extract_grid, to_svg
from unetpp_gui.core.model_io import load_model


def test_grid_counts_and_flops() -> None:
    from training.models import build_unetpp

    model = build_unetpp((64, 64, 3), base_filters=4)
    grid = extract_grid(model)
    assert len(grid.nodes) == 15 and len(grid.edges) == 4 + 10 + 20  # down + up + dense skips
    # X_0_0's first conv: 3x3x3 -> 4 channels at 64x64, 2 FLOPs per multiply-add
    assert grid.nodes[(0, 0)].flops >= 2 * 9 * 3 * 4 * 64 * 64
    assert grid.total_params == model.count_params()
    svg = ET.fromstring(to_svg(grid, "t"))
    assert len([g for g in svg.iter("{http://www.w3.org/2000/svg}g")]) == 15


def test_foreign_model_falls_back_to_layer_list() -> None:
    import keras

    x = keras.Input((16, 16, 3))
    m = keras.Model(x, keras.layers.Conv2D(1, 1, activation="sigmoid", name="only_conv")(x))
    grid = extract_grid(m)
    assert not grid.is_grid and "only_conv" in grid.layers
    ET.fromstring(to_svg(grid))


def test_cli_writes_svg_and_png_without_display(tiny_model_path: Path, tmp_path: Path) -> None:
    for name in ("d.svg", "d.png"):
        out = tmp_path / name
        res = subprocess.run([sys.executable, "-m", "unetpp_gui.cli", "info", "--model", str(tiny_model_path),
                              "--diagram", str(out)], capture_output=True, text=True, timeout=300,
                             env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
        assert res.returncode == 0, res.stderr[-1500:]
        data = out.read_bytes()
        if name.endswith(".svg"):
            root = ET.fromstring(data)
            ids = {g.get("id") for g in root.iter("{http://www.w3.org/2000/svg}g")}
            assert ids == {f"X_{i}_{j}" for i in range(3) for j in range(3 - i)}
        else:
            assert data[:8] == b"\x89PNG\r\n\x1a\n"


def test_dialog_draws_unet_pruned_and_exports(qtbot, tmp_path: Path) -> None:
    from PIL import Image

    from training.models import build_unet, build_unetpp, prune
    from training.saving import save_model
    from unetpp_gui.core.metadata import ModelMetadata
    from unetpp_gui.ui.architecture_view import ArchitectureDialog

    ds = build_unetpp((64, 64, 3), base_filters=2, deep_supervision=True)
    cases = {"unet": (build_unet((64, 64, 3), base_filters=2), 9), "pruned": (prune(ds, 2), 6), "ds": (ds, 15)}
    for name, (keras_model, n_nodes) in cases.items():
        path = tmp_path / f"{name}.h5"
        save_model(keras_model, path, ModelMetadata(name=name))
        dialog = ArchitectureDialog(load_model(path))
        qtbot.addWidget(dialog)
        assert len(dialog.node_items) == n_nodes
        if name == "ds":
            assert len(dialog.grid.heads) == 4
            dialog.show()
            qtbot.waitExposed(dialog)
            item = dialog.node_items[(1, 2)]
            point = dialog.view.mapFromScene(item.sceneBoundingRect().center())
            qtbot.mouseClick(dialog.view.viewport(), Qt.LeftButton, pos=point)
            assert "X_1_2" in dialog.details.text() and "parameters" in dialog.details.text()
        assert dialog.render_png(tmp_path / f"{name}.png")
        assert Image.open(tmp_path / f"{name}.png").size[0] > 200
        dialog.write_svg(tmp_path / f"{name}.svg")
        ET.fromstring((tmp_path / f"{name}.svg").read_text())

