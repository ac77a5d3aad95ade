"""The main window's menus and its file dialogs and About box (kept apart from the window's logic)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QFileDialog, QMessageBox

from unetpp_gui import RESEARCH_NOTICE, __version__
from unetpp_gui.core.image_io import IMAGE_SUFFIXES
from unetpp_gui.core.model_io import MODEL_SUFFIXES
from unetpp_gui.core.volume import NIFTI_SUFFIXES


def build_menus(win: Any) -> None:
    def action(menu: Any, text: str, slot: Any, shortcut: Any = None) -> QAction:
        act = QAction(text, win)
        if shortcut is not None:
            act.setShortcut(QKeySequence(shortcut))
        act.triggered.connect(slot)
        menu.addAction(act)
        return act

    file = win.menuBar().addMenu("&File")
    action(file, "&Open slices…", lambda: open_files_dialog(win), QKeySequence.Open)
    action(file, "Open &folder…", lambda: open_folder_dialog(win), "Ctrl+Shift+O")
    action(file, "Open &model…", lambda: open_model_dialog(win), "Ctrl+M")
    file.addSeparator()
    action(file, "&Export mask and overlay…", lambda: export_dialog(win), "Ctrl+E")
    action(file, "Export study mask as &NIfTI…", lambda: export_study_dialog(win), "Ctrl+Shift+E")
    action(file, "&Copy results", win.copy_results, "Ctrl+Shift+C")
    file.addSeparator()
    action(file, "&Quit", win.close, QKeySequence.Quit)
    view = win.menuBar().addMenu("&View")
    action(view, "&Next slice", lambda: win.step(1), QKeySequence.MoveToNextPage)
    action(view, "&Previous slice", lambda: win.step(-1), QKeySequence.MoveToPreviousPage)
    action(view, "Next slice (arrow)", lambda: win.step(1), "Alt+Down")
    action(view, "Previous slice (arrow)", lambda: win.step(-1), "Alt+Up")
    action(view, "&Largest tumour of this patient", win.go_to_largest_tumour, "Ctrl+L")
    view.addSeparator()
    layouts = view.addMenu("&Layout")
    win.layout_actions = {}
    for key, text, shortcut in (("side", "Three panels side by side", "Ctrl+Alt+1"),
                                ("single:0", "One large panel: image", "Ctrl+Alt+2"),
                                ("single:1", "One large panel: mask", "Ctrl+Alt+3"),
                                ("single:2", "One large panel: overlay", "Ctrl+Alt+4"),
                                ("grid", "2 × 2 grid", "Ctrl+Alt+5")):
        act = action(layouts, text, lambda _=False, k=key: win.set_panel_layout(k), shortcut)
        act.setCheckable(True)
        win.layout_actions[key] = act
    action(view, "Next panel (one large panel)", win.next_single_panel, "Ctrl+Alt+Right")
    action(view, "&Fit slice", win.panels.fit, "Ctrl+0")
    action(view, "&Actual size (1:1)", win.panels.actual_size, "Ctrl+1")
    action(view, "Zoom &in", lambda: win.panels.zoom(1.25), QKeySequence.ZoomIn)
    action(view, "Zoom &out", lambda: win.panels.zoom(0.8), QKeySequence.ZoomOut)
    view.addSeparator()
    action(view, "&Architecture…", win.show_architecture, "Ctrl+Shift+A")
    view.addAction(win.batch_dock.toggleViewAction())
    win.menu_view = view
    model_menu = win.menuBar().addMenu("&Model")
    action(model_menu, "&Open model…", lambda: open_model_dialog(win))
    model_menu.addSeparator()
    win.level_actions: dict[int | None, QAction] = {}
    for level in (None, 1, 2, 3):
        act = action(model_menu, "Full network" if level is None else f"Pruned to level L{level} (faster)",
                     lambda _=False, lv=level: win.set_inference(prune_level=lv))
        act.setCheckable(True)
        win.level_actions[level] = act
    model_menu.addSeparator()
    win.tta_action = action(model_menu, "&Test-time augmentation (mirror; shows uncertainty)",
                             lambda checked=False: win.set_inference(tta=checked))
    win.tta_action.setCheckable(True)
    win.bf16_action = action(model_menu, "&bfloat16 inference (faster; CPUs with AVX512-BF16 or AMX)",
                             lambda checked=False: win.set_inference(precision="bfloat16" if checked else "float32"))
    win.bf16_action.setCheckable(True)
    win.int8_action = action(model_menu, "&int8 inference (fastest; quantized network beside the model, masks "
                                         "differ slightly)",
                             lambda checked=False: win.set_inference(precision="int8" if checked else "float32"))
    win.int8_action.setCheckable(True)
    win.openvino_action = action(model_menu, "Run with &OpenVINO (faster on CPUs)",
                                 lambda checked=False: win.set_inference(runtime="openvino" if checked else "tensorflow"))
    win.openvino_action.setCheckable(True)
    model_menu.addSeparator()
    win.patient_filter_action = action(
        model_menu, "&Patient 3-D filter (drop specks no lesion in neighbouring slices supports)",
        lambda checked=False: win.set_patient_filter(checked))
    win.patient_filter_action.setCheckable(True)
    sync_inference_menu(win)
    win.menu_training = win.menuBar().addMenu("&Training")
    action(win.menu_training, "&Train model…", win.show_training, "Ctrl+T")
    help_menu = win.menuBar().addMenu("&Help")
    action(help_menu, "&About", lambda: show_about(win))


def sync_inference_menu(win: Any) -> None:
    """Check and enable the Model menu's entries for the model now loaded (build_menus made them)."""
    m = win.model
    for level, act in win.level_actions.items():
        act.setEnabled(m is not None and (level is None or level in m.prune_levels))
        act.setChecked(m is not None and m.prune_level == level)
    win.tta_action.setEnabled(m is not None)
    win.tta_action.setChecked(bool(m is not None and m.tta))
    from unetpp_gui.core.model_io import cpu_supports_bf16

    win.bf16_action.setEnabled(m is not None and cpu_supports_bf16())
    win.bf16_action.setChecked(bool(m is not None and m.precision == "bfloat16"))
    from unetpp_gui.core.quantized import sidecar

    win.int8_action.setEnabled(m is not None and sidecar(m.path).exists())
    win.int8_action.setChecked(bool(m is not None and m.precision == "int8"))
    from unetpp_gui.core.openvino_runtime import version as openvino_version

    ov = openvino_version()
    win.openvino_action.setEnabled(m is not None and ov is not None)
    win.openvino_action.setChecked(bool(m is not None and m.runtime == "openvino"))
    win.openvino_action.setToolTip((m.runtime_note if m is not None and m.runtime_note else "") or
                                   ("OpenVINO " + ov if ov else "OpenVINO is not installed (pip install openvino)"))
    flt = m.patient_filter if m is not None else None
    win.patient_filter_action.setEnabled(flt is not None)
    win.patient_filter_action.setChecked(win.active_patient_filter() is not None)
    win.patient_filter_action.setToolTip(f"{flt.describe()} (the model's setting)" if flt else
                                         "This model stores no patient 3-D filter")


def _patterns(suffixes: tuple[str, ...]) -> str:
    """A file dialog's name filter for these suffixes ("*.png *.jpg ...")."""
    return " ".join(f"*{s}" for s in suffixes)


def open_files_dialog(win: Any) -> None:
    files, _ = QFileDialog.getOpenFileNames(win, "Open slices", win._last_dir(),
                                            f"Slices and studies ({_patterns(IMAGE_SUFFIXES + NIFTI_SUFFIXES)})")
    if files:
        win.settings.setValue("last_folder", str(Path(files[0]).parent))
        win.open_paths(files)


def open_folder_dialog(win: Any) -> None:
    folder = QFileDialog.getExistingDirectory(win, "Open folder", win._last_dir())
    if folder:
        win.open_paths([folder])


def open_model_dialog(win: Any) -> None:
    path, _ = QFileDialog.getOpenFileName(win, "Open model", str(win.settings.value("last_model_dir", "")),
                                          f"Keras models ({_patterns(MODEL_SUFFIXES)})")
    if path:
        win.settings.setValue("last_model_dir", str(Path(path).parent))
        win.load_model(path)


def export_dialog(win: Any) -> None:
    folder = QFileDialog.getExistingDirectory(win, "Export mask and overlay to", win._last_dir())
    if folder:
        win.export_current(folder)


def export_study_dialog(win: Any) -> None:
    folder = QFileDialog.getExistingDirectory(win, "Export the study's mask (NIfTI) to", win._last_dir())
    if folder:
        win.export_study(folder)


def show_about(win: Any) -> None:
    import PySide6
    from PySide6.QtCore import qVersion

    tf = sys.modules.get("tensorflow")
    keras = sys.modules.get("keras")
    text = (f"<h3>UNet++ Viewer {__version__}</h3>"
            f"<p><b style='color:#b06000'>{RESEARCH_NOTICE}</b></p>"
            "<p>Segments FLAIR abnormalities in brain MR slices with a UNet++ "
            "(Zhou et al., MICCAI 2018).</p>"
            f"<p>Python {sys.version.split()[0]}, Qt {qVersion()}, PySide6 {PySide6.__version__}, "
            f"TensorFlow {getattr(tf, '__version__', 'not loaded')}, "
            f"Keras {getattr(keras, '__version__', 'not loaded')}</p>")
    if win.model is not None:
        text += f"<p>Model: {win.model.name}<br>{win.model.path}</p>"
    box = QMessageBox(QMessageBox.Information, "About UNet++ Viewer", text, QMessageBox.Ok, win)
    box.setModal(False)
    box.show()
    win._about = box
