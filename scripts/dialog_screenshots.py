"""Screenshots of the architecture view and of the training dialog after a short real training run.

Usage: python scripts/dialog_screenshots.py [LGG_FOLDER] [OUT_DIR]   (called by scripts/screenshots.sh)
The training run is a quick trial (a few hundred slices, small model) so that the curves have points;
it writes its model to a temporary folder, never into the project.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    from PySide6.QtCore import QSettings, QTimer
    from PySide6.QtWidgets import QApplication

    lgg = Path(sys.argv[1] if len(sys.argv) > 1 else ROOT.parent / "shared" / "data" / "lgg")
    out = Path(sys.argv[2] if len(sys.argv) > 2 else ROOT / "docs" / "screenshots")
    out.mkdir(parents=True, exist_ok=True)
    app = QApplication.instance() or QApplication(sys.argv[:1])
    from unetpp_gui.resources import bundled_model_path
    from unetpp_gui.ui.main_window import MainWindow

    tmp = Path(tempfile.mkdtemp(prefix="unetpp_shots_"))
    win = MainWindow(settings=QSettings(str(tmp / "s.ini"), QSettings.IniFormat))
    win.resize(1600, 1000)
    win.show()
    failures: list[str] = []

    def architecture(_model) -> None:
        win.model_changed.disconnect(architecture)
        win.architecture_shown.connect(shoot_architecture)
        win.show_architecture()  # opens at once, or once the layers have loaded (a model started on OpenVINO)

    def shoot_architecture(dialog) -> None:
        dialog.resize(1400, 900)
        QTimer.singleShot(800, lambda: (dialog.grab().save(str(out / "architecture_view.png")), dialog.close(),
                                        training()))

    def training() -> None:
        dialog = win.show_training()
        dialog.resize(1300, 980)  # all settings in view, no scroll bar
        dialog.filters.setValue(8)
        dialog.image_size.setValue(128)
        dialog.epochs.setValue(4)
        dialog.max_slices.setValue(240)
        dialog.loss.setCurrentText("bce_dice")
        dialog.lr.setValue(1e-3)
        dialog.out_edit.setText(str(tmp / "trial.h5"))

        def scanned() -> None:
            if not dialog.start_button.isEnabled():
                failures.append("training dialog: data not accepted: " + dialog.scan_label.text())
                app.quit()
                return
            dialog.finished_training.connect(lambda status: QTimer.singleShot(500, lambda: finish(dialog, status)))
            dialog.start()

        dialog.data_edit.setText(str(lgg))
        worker = dialog.scan_data()
        if worker is None:
            failures.append(f"training dialog: cannot scan {lgg}")
            app.quit()
            return
        worker.finished.connect(scanned)

    def finish(dialog, status: str) -> None:
        if status != "done":
            failures.append(f"training ended with {status}: {dialog.log.toPlainText()[-2000:]}")
        dialog.grab().save(str(out / "train_dialog.png"))
        dialog.close()
        app.quit()

    win.model_changed.connect(architecture)
    win.model_failed.connect(lambda msg: (failures.append(msg), app.quit()))
    win.load_model(bundled_model_path())
    app.exec()
    win.close()
    for f in failures:
        print(f, file=sys.stderr)
    print(f"screenshots in {out}" if not failures else "FAILED", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
