"""The main window: slice list, image/mask/overlay panels, results and controls.

The window renders state and dispatches work; models load and slices are predicted on worker
threads (:mod:`unetpp_gui.workers`); the GUI thread only thresholds cached maps (cheap NumPy).
"""

from __future__ import annotations

import threading
import time
import weakref
from collections import deque
from pathlib import Path
from typing import Any

from PySide6.QtCore import QByteArray, QEvent, QSettings, Qt, QTimer, QUrl, Signal
from PySide6.QtGui import QColor, QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import (
    QApplication, QDockWidget, QFrame, QLabel, QMainWindow, QMessageBox,
    QPushButton, QScrollArea, QSplitter, QStackedWidget, QStyle, QVBoxLayout, QWidget,
)

from unetpp_gui.core.discovery import Discovery
from unetpp_gui.core.image_io import save_png
from unetpp_gui.core.inference import SliceResult
from unetpp_gui.core.overlay import render_overlay
from unetpp_gui.core.postprocess import binarize
from unetpp_gui.core.review import (JobProgress, ThresholdModel, prediction_order, remembered_thresholds,
                                    thresholds_to_remember)
from unetpp_gui.core.store import SliceStore, Thresholds
from unetpp_gui.ui import collector, menus
from unetpp_gui.ui.batch_view import BatchView
from unetpp_gui.ui.controls import Controls, ResultsPanel
from unetpp_gui.ui.paint_gate import after_next_paint
from unetpp_gui.ui.panels import ImagePanels
from unetpp_gui.ui.progress_bar import LazyProgressBar
from unetpp_gui.core.model_io import MODEL_SUFFIXES
from unetpp_gui.ui.empty_state import EmptyState, remember_folder
from unetpp_gui.ui.screen import screen_share
from unetpp_gui.ui.slice_list import SliceList, legend_html, legend_tooltip
from unetpp_gui import workers

#: Longest stretch of one event-loop turn spent taking in prediction results (the rest waits for the next turn).
RESULT_TURN_S = 0.004
#: Work split off into a turn of its own runs from a 1 ms timer: Qt 6 runs a 0 ms single shot as a queued call,
#: which the event loop may deliver in the same pass as the posted events before it, with no timer between.
NEXT_TURN_MS = 1


def default_size() -> tuple[int, int]:
    """A first window that fits the screen (92 % of its free area), so the panels get most of it."""
    share = screen_share()
    return (1500, 960) if share is None else (max(900, share[0]), max(600, share[1]))


class MainWindow(QMainWindow):
    model_changed = Signal(object)  # LoadedModel
    model_failed = Signal(str)
    runtime_changed = Signal(str)  # "openvino" / "tensorflow": the runtime a deferred measurement kept
    slice_shown = Signal(object)  # Path of the slice now on screen with its prediction
    predictions_finished = Signal()
    architecture_shown = Signal(object)  # the ArchitectureDialog, once open (at once, or after its layers loaded)
    message = Signal(str)  # every non-blocking message shown to the user

    def __init__(self, settings: QSettings | None = None, batch_size: int | None = None) -> None:
        super().__init__()
        workers.favour_gui_thread()  # workers hand the interpreter lock back to this thread sooner
        collector.attach()  # garbage is collected on this thread only while the window is open
        self.setWindowTitle("UNet++ Viewer — research use only")
        self.settings = settings or QSettings("UNetPPViewer", "UNetPP Viewer")
        self.batch_size = batch_size  # None: the model's measured best (workers.load_model_worker)
        self.store = SliceStore()
        self.model: Any = None
        self.current: Path | None = None
        self.predicted_count = 0  # slices run through the model in this window
        self._job: Any = None
        self._incoming: deque[SliceResult] = deque()  # results of the running job not yet taken in
        self._finished_job: Any = None  # a job that ended while its last results were still queued
        self._render_due = False  # the shown slice got its result: drawn in the next turn (_render_if_due)
        self._said_batch_note = ""  # the batch-size note the status bar last gave (a batch may measure a new one)
        self._hold_jobs = False  # True from the panels' first appearance until they have been painted
        self.job_progress = JobProgress(0)
        self.threshold_model = ThresholdModel()  # what the controls edit and every view reads
        self._loading_model: Any = None
        self._jobs_alive: list[Any] = []  # keep workers referenced until they finish
        self._closed = False  # worker signals can arrive after the window is gone
        self._preparing: threading.Event | None = None  # set it to stop the background preparation of OpenVINO
        #: the jobs that may still hold a replaced model; once they ended, the heap is settled (collector.settle)
        self._settle_wait: set[int] | None = None
        self._settle_replaced = False
        self._holding_full = False  # full garbage collections wait from a model load until the heap is settled
        self._jump_when_done = False
        self._build_central()
        self.batch = BatchView(self.store, self.thresholds())
        self.batch_dock = QDockWidget("Batch results", self)
        self.batch_dock.setObjectName("batch_dock")
        self.batch_dock.setWidget(self.batch)
        self.addDockWidget(Qt.BottomDockWidgetArea, self.batch_dock)
        self._summary_timer = QTimer(self)
        self._summary_timer.setInterval(500)
        self._summary_timer.timeout.connect(self.batch.refresh)
        self._summary_timer.start()
        menus.build_menus(self)
        self._build_status_bar()

        self.setAcceptDrops(True)
        self.slice_list.currentRowChanged.connect(self._on_row)
        self.controls.changed.connect(self._on_controls)
        self.controls.reset_requested.connect(self.reset_thresholds)
        self.panels.hovered.connect(self.readout.setText)
        self.cancel_button.clicked.connect(self.cancel_predictions)
        self.batch.slice_selected.connect(self.show_path)
        self.batch.export_masks_requested.connect(self.export_batch)
        self._restore_settings()
        # the panels' warm-up (their first layout and paint, ~30 ms on a slow CPU) after the window's own first
        # paint, not inside it: at a fixed 50 ms it often ran the window's first layout and both paints as one
        # 60-70 ms turn (load-phase longest gap 43-70 ms, AVX2 EPYC; 36-57 ms gated, five fresh processes each)
        after_next_paint(self.centralWidget(), lambda: QTimer.singleShot(30, self, self._warm_up_panels), 500)

    def _build_central(self) -> None:
        """Slice list and legend | start page or image panels | results and controls."""
        self.slice_list = SliceList(self.store, self._kind)
        self.slice_list.setMinimumWidth(190)
        self.panels = ImagePanels()
        self.results = ResultsPanel()
        self.controls = Controls(self.threshold_model)
        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.addWidget(self.results)
        right_layout.addWidget(self.controls)
        right_layout.addStretch(1)
        right.setMaximumWidth(340)
        # scrolls in a short window (a 1366x768 screen less its task bar) instead of setting the window's minimum
        # height (777 px) or squeezing the panels' rows
        right_scroll = QScrollArea()
        right_scroll.setWidget(right)
        right_scroll.setWidgetResizable(True)
        right_scroll.setFrameShape(QFrame.NoFrame)
        right_scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        bar = right_scroll.style().pixelMetric(QStyle.PM_ScrollBarExtent)
        right_scroll.setMinimumWidth(right.minimumSizeHint().width() + bar)
        right_scroll.setMaximumWidth(right.maximumWidth() + bar)
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(self.slice_list, 1)
        self.legend = QLabel(legend_html())
        self.legend.setWordWrap(True)
        self.legend.setToolTip(legend_tooltip())
        self.legend.setStyleSheet("font-size: 11px;")
        left_layout.addWidget(self.legend)
        self.empty = EmptyState(self)
        self.center = QStackedWidget()
        self.center.addWidget(self.empty)
        self.center.addWidget(self.panels)
        splitter = QSplitter()
        splitter.addWidget(left)
        splitter.addWidget(self.center)
        splitter.addWidget(right_scroll)
        splitter.setStretchFactor(1, 1)
        self.setCentralWidget(splitter)

    def _build_status_bar(self) -> None:
        """Status text, pixel readout, progress (a label beside the bar) and Cancel."""
        self.status = QLabel("Starting…")
        self.readout = QLabel("")
        self.progress = LazyProgressBar()
        self.progress.setMaximumWidth(200)
        self.progress.setTextVisible(False)  # some styles paint the fill over the text: a label beside it
        self.progress.hide()
        self.progress_text = QLabel("")
        self.progress_text.hide()
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.hide()
        bar = self.statusBar()
        bar.addWidget(self.status, 1)
        bar.addPermanentWidget(self.readout)
        bar.addPermanentWidget(self.progress)
        bar.addPermanentWidget(self.progress_text)
        bar.addPermanentWidget(self.cancel_button)

    # ----- model -------------------------------------------------------------------------------
    def load_model(self, path: str | Path, trust: bool = False, prune_level: int | None = None,
                   tta: bool = False, precision: str | None = None, runtime: str | None = None) -> None:
        """Load a model in the background; the current one stays active until the new one works.

        ``precision`` (float32 / bfloat16 / auto) and ``runtime`` (auto / tensorflow / openvino) default to
        the remembered choice, "auto" at first.
        """
        self.status.setText(f"Loading model {Path(path).name} in the background…")
        self.empty.set_model_state(f"Loading model {Path(path).name}… (slices can be opened meanwhile; "
                                   "they are predicted once it is ready)")
        if self.model is None:
            self.results.model.setText(f"Model: loading {Path(path).name}…")
            self.controls.setEnabled(False)  # its thresholds are not known yet
        self._trust = trust
        precision = precision or str(self.settings.value("inference/precision", "auto"))
        if runtime is None:
            from unetpp_gui.core.openvino_runtime import default_runtime

            runtime = str(self.settings.value("inference/runtime", default_runtime()))
        worker = workers.load_model_worker(path, trust, prune_level, tta, precision, runtime)
        if not self._holding_full:  # a full collection would walk the framework's objects while they are made
            collector.hold_full()
            self._holding_full = True
        worker.returned.connect(self._on_model_loaded)
        worker.errored.connect(self._on_model_error)
        self._track(worker)
        self._loading_model = worker
        worker.start()

    def _on_model_loaded(self, model: Any) -> None:
        if self._closed:
            return
        self._loading_model = None
        if self._preparing is not None:
            self._preparing.set()  # an earlier model's preparation of OpenVINO is of no use now
        old = self.model
        self.model = model
        # the heap is settled once every job running now (this load's, a replaced model's) has ended
        self._settle_wait = (self._settle_wait or set()) | {id(w) for w in self._jobs_alive}
        self._settle_replaced = self._settle_replaced or old is not None
        meta = model.metadata
        self._show_model()
        self.controls.set_thresholds(*remembered_thresholds(self.settings.value(f"thresholds/{model.name}"),
                                                            meta.pixel_threshold, meta.decision_threshold))
        self.controls.setEnabled(True)
        self.empty.set_model_state(f"Model {model.name} is ready.")
        self._said_batch_note = model.batch_size_note
        self._say(f"Model {model.name} ready" + (f"; {model.batch_size_note}." if model.batch_size_note else ".")
                  + (" OpenVINO is prepared in the background (once for this model on this machine)."
                     if model.openvino_pending else "")
                  + (f" {model.precision_note}." if model.precision_note else ""))
        self.model_changed.emit(model)
        if old is not None:
            self._restart_predictions()
        else:
            self.schedule_predictions()
        if model.openvino_pending:
            self._prepare_openvino(model)

    def _show_model(self) -> None:
        """The Result panel's model line and the Model menu, for the model as it runs now."""
        model = self.model
        variant = ((f", pruned L{model.prune_level}" if model.prune_level else "") + (", TTA" if model.tta else "")
                   + (", 2.5-D" if model.context else "")
                   + (f", {model.precision}" if model.precision in ("bfloat16", "int8") else "")
                   + (", OpenVINO" if model.runtime == "openvino" else "")
                   + (", preparing OpenVINO…" if model.openvino_pending else ""))
        # one line (the panel has no height to spare: a wrapped text was cut off); the rest in the tooltip
        self.results.model.setText(f"Model: {model.name}{variant}")
        menus.sync_inference_menu(self)
        self.results.model.setToolTip(f"{model.path}\n{model.n_params:,} parameters"
                                      + (f"\nreads neighbouring slices: {model.context.describe()}"
                                         if model.context else ""))

    def _prepare_openvino(self, model: Any) -> None:
        """"auto" for a network only Keras converts, never measured here: the model runs on TensorFlow at once,
        a child process converts it for OpenVINO, and once no prediction runs both runtimes are measured; the
        one "auto" keeps takes over (cached: later starts begin with it)."""
        self._preparing = threading.Event()
        worker = workers.prepare_openvino_worker(model, lambda: self._job is None, self._preparing)
        worker.returned.connect(lambda prepared: self._on_openvino_prepared(model, prepared))
        worker.errored.connect(lambda e: self._say(f"OpenVINO not prepared: {e}", error=True))
        self._track(worker)
        worker.start()

    def _on_openvino_prepared(self, model: Any, prepared: Any) -> None:
        if self._closed or prepared is None or model is not self.model:
            return  # closed, or another model (or variant) was loaded meanwhile
        model.take_runtime(prepared)
        self._show_model()
        note = model.runtime_note
        detail = note[note.find("measured here"):] if "measured here" in note else note.removeprefix("TensorFlow: ")
        self._say(("Inference runs on OpenVINO from now on" if model.runtime == "openvino" else
                   "Inference stays on TensorFlow") + f" ({detail}).")
        self.runtime_changed.emit(model.runtime)

    def _on_model_error(self, exc: BaseException) -> None:
        if self._closed:
            return
        self._loading_model = None
        if self._settle_wait is None:
            self._release_full()
        msg = str(exc)
        keep = f" The model {self.model.name} stays active." if self.model is not None else ""
        self.empty.set_model_state(f"Model not loaded: {msg}{keep}")
        if self.model is None:
            self.results.model.setText("Model: none (File → Open model…)")
        self._say(f"Model not loaded: {msg}{keep}", error=True)
        box = QMessageBox(QMessageBox.Warning, "Model not loaded", msg + keep, QMessageBox.Ok, self)
        box.setModal(False)
        box.show()  # non-blocking
        self.model_failed.emit(msg)

    def set_inference(self, prune_level: Any = "keep", tta: Any = "keep", precision: str | None = None,
                      runtime: str | None = None) -> None:
        """Reload the current model file pruned to a level, with test-time augmentation, in another
        precision or on another runtime (precision and runtime are remembered for later sessions)."""
        if self.model is None:
            return
        level = self.model.prune_level if prune_level == "keep" else prune_level
        use_tta = self.model.tta if tta == "keep" else bool(tta)
        if precision is not None:
            self.settings.setValue("inference/precision", precision)
        if runtime is not None:
            self.settings.setValue("inference/runtime", runtime)
        self.load_model(self.model.path, getattr(self, "_trust", False), level, use_tta,
                        precision or self.model.precision, runtime)

    def go_to_largest_tumour(self) -> Path | None:
        """Show the slice of the current patient with the largest predicted tumour area (if any)."""
        if self.current is None:
            return None
        patient, t = self.store.patient(self.current), self.thresholds()
        best, area = None, 0
        for p in self.store.paths:
            d = self.store.derived(p, t) if self.store.patient(p) == patient else None
            if d is not None and d.tumour and d.mask_pixels > area:
                best, area = p, d.mask_pixels
        if best is not None:
            self.slice_list.setCurrentRow(self.store.index(best))
            self._say(f"Showing {best.name}: the largest predicted tumour of {patient}.")
        return best

    def effective_batch_size(self) -> int:
        """The batch size given to the window, else the one measured fastest for this model and machine (a batch
        measures it where it is not known yet: ``workers.predict_worker``)."""
        return self.batch_size or getattr(self.model, "batch_size_choice", None) or 4

    def active_patient_filter(self) -> Any:
        """The model's patient 3-D filter, unless switched off in the Model menu (remembered)."""
        if self.model is None or str(self.settings.value("inference/patient_filter", "on")) == "off":
            return None
        return self.model.patient_filter

    def set_patient_filter(self, on: bool) -> None:
        """Switch the patient 3-D filter on or off; every slice is predicted again to show it."""
        self.settings.setValue("inference/patient_filter", "on" if on else "off")
        menus.sync_inference_menu(self)
        if self.model is not None:
            self._restart_predictions()
            self.render_current()

    def reset_thresholds(self) -> None:
        if self.model is not None:
            meta = self.model.metadata
            self.controls.set_thresholds(meta.pixel_threshold, meta.decision_threshold)

    # ----- opening slices ------------------------------------------------------------------------
    def open_paths(self, paths: list[str | Path]) -> None:
        """Add files/folders (walked on a worker thread) and predict them."""
        self.status.setText("Looking for slices…")
        worker = workers.discover_worker([str(p) for p in paths])
        worker.returned.connect(self._on_discovered)
        worker.errored.connect(lambda e: self._say(f"Could not open: {e}", error=True))
        self._track(worker)
        worker.start()

    def _on_discovered(self, found: Discovery) -> None:
        if self._closed:
            return
        if found.folders:  # found by the worker: a stat per named path is file I/O, not GUI work
            self.settings.setValue("last_folder", str(found.folders[-1]))
            for folder in reversed(found.folders):
                remember_folder(self.settings, str(folder))
        for path, why in found.problems:
            self._say(f"{path}: {why}", error=True)
        added = self.store.add_paths(found.slices, found.patients)
        if self.store.paths and self.center.currentWidget() is not self.panels and not self._hold_jobs:
            self._hold_jobs = True  # until the panels have been painted
            QTimer.singleShot(NEXT_TURN_MS, self, self._show_panels)  # a turn of its own: the lists below take one too
        self.slice_list.list_model.sync()
        self.batch.sync_rows()
        if not found.slices and not found.problems:
            self._say("No image slices found there.", error=True)
        if added:
            self._say(f"Added {len(added)} slice(s); {len(self.store)} in the list.")
            if self.current is None:
                self.slice_list.setCurrentRow(self.store.index(added[0]))
                self._jump_when_done = True  # to the largest tumour, unless the user moves first
        self.schedule_predictions()

    def _show_panels(self) -> None:
        """Swap the start page for the panels; the first prediction job starts once they have been painted."""
        if self._closed:
            return
        self.center.setCurrentWidget(self.panels)
        self.panels.after_first_paint(self._release_jobs)
        # settle the new layout now: one paint at its final geometry instead of three in a row
        QApplication.sendPostedEvents(None, QEvent.LayoutRequest)

    # ----- prediction jobs -------------------------------------------------------------------------
    def _release_jobs(self) -> None:
        self._hold_jobs = False
        if not self._closed:
            self.schedule_predictions()

    def schedule_predictions(self) -> None:
        if self.model is None or self._job is not None or self._hold_jobs:
            return
        pending = prediction_order(self.store.pending(), self.current, self.store.patient,
                                   whole_patient=self.active_patient_filter() is not None)
        if not pending:
            return
        self.job_progress = JobProgress(len(pending))
        self.progress.setRange(0, len(pending))
        self.progress.setValue(0)
        self.progress.show()
        self.progress_text.setText(self.job_progress.fraction_text())
        self.progress_text.show()
        self.cancel_button.show()
        self.status.setText(f"Predicting {len(pending)} slice(s)…")
        job = workers.predict_worker(self.model, pending, self.batch_size, self.active_patient_filter(),
                                     {p: self.store.patient(p) for p in pending})
        ref = weakref.ref(job)  # a strong reference in a Qt connection would keep the job alive forever
        job.yielded.connect(lambda res: self._on_result(res) if ref() is self._job else None)
        job.finished.connect(lambda: self._on_job_finished(ref()) if ref() is not None else None)
        job.errored.connect(lambda e: self._say(f"Prediction failed: {e}", error=True))
        self._job = job
        self._track(job)
        job.start()

    def cancel_predictions(self) -> None:
        if self._job is not None:
            self._job.quit()
            self._say("Prediction cancelled; finished slices are kept.")

    def _restart_predictions(self) -> None:
        """Drop every result and predict again (another model or filter): the running job is told to
        stop and detached at once, so none of its late results can mix with the new ones."""
        if self._job is not None:
            self._job.quit()
            self._job = None
        self._incoming.clear()
        self._finished_job = None
        self.store.clear_results()
        self._refresh_markers()
        self.batch.refresh(force=True)
        self.schedule_predictions()

    def _on_result(self, res: SliceResult) -> None:
        """A result from the running job: queued, and taken in by :meth:`_take_results` in the event loop's
        next turn, with those that arrived meanwhile (a batch's results arrive in a burst)."""
        if self._closed:
            return
        self._incoming.append(res)
        if len(self._incoming) == 1:
            QTimer.singleShot(NEXT_TURN_MS, self, self._take_results)

    def _take_results(self) -> None:
        """Store queued results for at most RESULT_TURN_S, update the progress once and redraw the shown
        slice if it came; what is left waits for the next turn (a timer, so the event loop paints and runs other
        timers between turns)."""
        if self._closed or not self._incoming:
            return
        deadline = time.perf_counter() + RESULT_TURN_S
        shown = False
        errors: list[SliceResult] = []
        while self._incoming:
            res = self._incoming.popleft()
            self.store.put(res)
            self.predicted_count += 1
            self.job_progress.tick()
            self.slice_list.list_model.refresh(self.store.index(res.path))
            self.batch.slice_updated(res.path)
            if res.error:
                errors.append(res)
            shown = shown or res.path == self.current
            if time.perf_counter() >= deadline:
                break
        self.progress.setValue(self.job_progress.done)
        self.progress_text.setText(self.job_progress.fraction_text())
        self.status.setText(self.job_progress.status_text())
        for res in errors:  # after the progress text, so that the status bar shows them
            self._say(f"{res.path.name}: {res.error}", error=True)
        if shown and not self._render_due:  # a turn of its own: drawing the slice (~10 ms on a slow CPU, more
            self._render_due = True         # with its repaint) comes after this one
            QTimer.singleShot(NEXT_TURN_MS, self, self._render_if_due)
        if self._incoming:
            QTimer.singleShot(NEXT_TURN_MS, self, self._take_results)
        elif self._finished_job is not None:  # the job ended while its last results were queued
            job, self._finished_job = self._finished_job, None
            self._on_job_finished(job)

    def _render_if_due(self) -> None:
        if self._render_due and not self._closed:
            self.render_current()

    def _on_job_finished(self, job: Any) -> None:
        if job is not self._job or self._closed:
            return
        if self._incoming:  # finish after its queued results have been taken in
            self._finished_job = job
            return
        self._render_if_due()  # the shown slice's result is drawn before the job is reported finished
        self._job = None
        self._settle_heap_when_due()
        self.progress.hide()
        self.progress_text.hide()
        self.cancel_button.hide()
        if self.store.pending() and self.job_progress.complete:
            self.schedule_predictions()  # slices added while the job ran
            return
        done = sum(1 for r in self.store.compact.values() if r.ok)
        errors = sum(1 for r in self.store.compact.values() if not r.ok)
        measured = self.model.batch_size_note if self.model.batch_size_note != self._said_batch_note else ""
        self._said_batch_note = self.model.batch_size_note
        summary = f"{done} slice(s) predicted, {errors} error(s)"
        if measured:  # said (the message log keeps it), not only shown
            self._say(f"{summary}; {measured}.")
        else:
            self.status.setText(f"{summary}.")
        self.batch.refresh(force=True)
        if self._jump_when_done:
            self._jump_when_done = False
            self.go_to_largest_tumour()
        self.predictions_finished.emit()

    # ----- display ---------------------------------------------------------------------------------
    def thresholds(self) -> Thresholds:
        return self.threshold_model.value

    def _on_row(self, row: int) -> None:
        if row < 0:
            return
        if self.current is not None:
            self._jump_when_done = False  # the user chose a slice: leave it there
        self.current = self.store.paths[row]
        self.batch.select(self.current)
        self.render_current()

    def show_path(self, path: Path) -> None:
        """Show a slice chosen elsewhere (the results table): the list follows."""
        self.slice_list.setCurrentRow(self.store.index(path))

    def step(self, delta: int) -> None:
        if self.slice_list.count():
            row = min(max(self.slice_list.currentRow() + delta, 0), self.slice_list.count() - 1)
            self.slice_list.setCurrentRow(row)

    def render_current(self) -> None:
        self._render_due = False
        path = self.current
        if path is None:
            return
        compact = self.store.compact.get(path)
        if compact is not None and compact.error:
            self.panels.clear()
            self.results.show_derived(None, compact.error)
            self.slice_shown.emit(path)
            return
        full = self.store.full(path)
        if full is None:
            if compact is not None:  # evicted from the map cache: predict it again
                del self.store.compact[path]
            self.panels.clear()
            self.results.show_derived(None)
            self.schedule_predictions()
            return
        c = self.controls
        t = self.thresholds()
        mask = binarize(full.prob_q, t.pixel)
        overlay = render_overlay(full.image, mask, c.rgb, c.opacity.value() / 100, c.mode.currentText(),
                                 full.gt if c.show_gt.isChecked() else None)
        self.panels.show_slice(full.image, full.gt, c.show_gt.isChecked())
        self.panels.show_result(full.prob_q, mask, overlay, c.mask_view.currentText(), full.std_q)
        self.results.show_derived(self.store.derived(path, t), filtered=self._filter_text(path),
                                  warning=compact.warning if compact is not None else None)
        self.slice_shown.emit(path)

    def _filter_text(self, path: Path) -> str:
        if self.active_patient_filter() is None:
            return "off"
        removed = self.store.removed_pixels(path)
        return f"removed {removed:,} px" if removed else "nothing removed"

    def _on_controls(self) -> None:
        self.render_current()
        self._refresh_markers()
        self.batch.set_thresholds(self.thresholds())

    def _kind(self, path: Path) -> str:
        """The slice list's marker for ``path`` at the current thresholds."""
        return self.store.state(path, self.thresholds())

    def _refresh_markers(self) -> None:
        self.slice_list.list_model.refresh()

    def marker(self, row: int) -> str:
        return self.slice_list.marker(row)

    # ----- export / clipboard ----------------------------------------------------------------------
    def export_current(self, folder: str | Path) -> tuple[Path, Path] | None:
        if self.current is None or self.panels.mask is None or self.panels.overlay is None:
            self._say("Nothing to export yet.", error=True)
            return None
        folder = Path(folder)
        mask_path = folder / f"{self.current.stem}_pred.png"
        overlay_path = folder / f"{self.current.stem}_overlay.png"
        try:
            save_png(mask_path, self.panels.mask)
            save_png(overlay_path, self.panels.overlay)
        except OSError as exc:
            self._say(f"Export failed: {exc}", error=True)
            return None
        self._say(f"Exported {mask_path.name} and {overlay_path.name} to {folder}")
        return mask_path, overlay_path

    def export_batch(self, folder: str | Path) -> Any:
        """Write every slice's mask and overlay to ``folder`` on a worker (predicts again, streaming)."""
        if self.model is None or not self.store.paths:
            self._say("Nothing to export yet.", error=True)
            return None
        c, t = self.controls, self.thresholds()
        paths = [p for p in self.store.paths if p in self.store.compact and self.store.compact[p].ok]
        worker = workers.export_masks_worker(self.model, paths, Path(folder), t.pixel, c.rgb, c.opacity.value() / 100,
                                             self.effective_batch_size(), self.active_patient_filter())
        count = [0]
        worker.yielded.connect(lambda _r: (count.__setitem__(0, count[0] + 1),
                                           self.status.setText(f"Exporting masks: {count[0]}/{len(paths)}")))
        worker.finished.connect(lambda: self._say(f"Exported {count[0]} mask(s) and overlay(s) to {folder}"))
        worker.errored.connect(lambda e: self._say(f"Export failed: {e}", error=True))
        self._track(worker)
        worker.start()
        return worker

    def export_study(self, folder: str | Path) -> Any:
        """Write the mask of the NIfTI study on screen as ``<study>_pred.nii.gz`` in ``folder`` (its geometry is
        the input's), predicting the whole volume again on a worker. Returns the worker, or None."""
        from unetpp_gui.core.volume import parse_ref

        ref = parse_ref(self.current) if self.current is not None else None
        if self.model is None or ref is None:
            self._say("Export as NIfTI needs a slice of a NIfTI study on screen.", error=True)
            return None
        t = self.thresholds()
        worker = workers.export_study_worker(self.model, ref[0], Path(folder), t.pixel, t.decision,
                                             self.active_patient_filter())
        worker.returned.connect(lambda r: self._say(
            f"Saved {r.mask_file.name}: {r.tumour_ml:.2f} mL tumour in {r.slices_with_tumour} slice(s)."))
        worker.errored.connect(lambda e: self._say(f"NIfTI export failed: {e}", error=True))
        self._track(worker)
        worker.start()
        return worker

    def copy_results(self) -> None:
        name = self.current.name if self.current else ""
        QApplication.clipboard().setText(f"Slice: {name}\n{self.results.text()}")
        self._say("Results copied to the clipboard.")

    # ----- dialogs -----------------------------------------------------------------------------------
    def show_architecture(self) -> Any:
        if self.model is None:
            self._say("No model loaded yet.", error=True)
            return None
        if self.model.keras_model is None:  # started without TensorFlow (OpenVINO): load the layers off this thread
            model = self.model
            worker = workers.network_worker(model)
            worker.returned.connect(lambda _: self.show_architecture() if self.model is model else None)
            worker.errored.connect(lambda e: self._say(f"Could not load the network's layers: {e}", error=True))
            self._say("Loading the network’s layers for the architecture view…")
            self._track(worker)
            worker.start()
            return None
        from unetpp_gui.ui.architecture_view import ArchitectureDialog

        dialog = ArchitectureDialog(self.model, self)
        dialog.setModal(False)
        dialog.show()
        self._arch_dialog = dialog
        self.architecture_shown.emit(dialog)
        return dialog

    def show_training(self) -> Any:
        from unetpp_gui.ui.train_dialog import TrainDialog

        dialog = TrainDialog(str(self.model.path) if self.model is not None else None, self)
        dialog.use_model.connect(self.load_model)
        dialog.setModal(False)
        dialog.show()
        self._train_dialog = dialog
        return dialog

    # ----- drag and drop -----------------------------------------------------------------------------
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dragMoveEvent(self, event: Any) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        urls: list[QUrl] = event.mimeData().urls()
        paths = [u.toLocalFile() for u in urls if u.isLocalFile()]
        models = [p for p in paths if Path(p).suffix.lower() in MODEL_SUFFIXES]
        slices = [p for p in paths if p not in models]
        if models:
            self.load_model(models[0])
        if slices:
            self.open_paths(slices)
        event.acceptProposedAction()

    # ----- helpers -----------------------------------------------------------------------------------
    def _say(self, text: str, error: bool = False) -> None:
        self.status.setText(text)
        self.status.setStyleSheet("color: #c5221f;" if error else "")
        self.message.emit(text)

    def _track(self, worker: Any) -> None:
        self._jobs_alive.append(worker)
        key = id(worker)  # not the worker itself: see schedule_predictions
        worker.finished.connect(lambda: self._forget_job(key))

    def _last_dir(self) -> str:
        return str(self.settings.value("last_folder", str(Path.home())))

    def _forget_job(self, key: int) -> None:
        """Drop a finished worker, and close its generator so nothing it holds outlives it."""
        for w in [w for w in self._jobs_alive if id(w) == key]:
            self._jobs_alive.remove(w)
            gen = getattr(w, "_gen", None)
            if gen is not None and hasattr(gen, "close"):
                try:
                    gen.close()
                except Exception:
                    pass
        if self._settle_wait is not None:
            self._settle_wait.discard(key)
        self._settle_heap_when_due()

    def _settle_heap_when_due(self) -> None:
        """Once a model has loaded and every job that ran then has ended: freeze the heap (collector.settle).
        After a model switch, whose collection holds this thread 15-314 ms, not before the batch running now
        has ended too."""
        if self._closed or self._settle_wait is None or self._settle_wait:
            return
        if self._settle_replaced and self._job is not None:
            return
        collector.settle(self._settle_replaced)
        self._settle_wait, self._settle_replaced = None, False
        self._release_full()

    def _release_full(self) -> None:
        if self._holding_full:
            collector.release_full()
            self._holding_full = False

    def busy(self) -> bool:
        return bool(self._jobs_alive)

    def _warm_up_panels(self) -> None:
        if self.current is None:
            self.panels.warm_up()
            # the window as the timer's context: Qt drops the call if the window is gone by then
            QTimer.singleShot(250, self, lambda: self._closed or self.current is not None or self.panels.clear())

    def set_panel_layout(self, key: str) -> None:
        """``side``, ``grid`` or ``single:N`` (N: 0 image, 1 mask, 2 overlay); remembered."""
        name, _, which = key.partition(":")
        self.panels.set_layout(name, int(which) if which else None)
        for k, act in getattr(self, "layout_actions", {}).items():
            act.setChecked(k == key)
        self.settings.setValue("panel_layout", key)
        QTimer.singleShot(0, self.panels, self.panels.fit)

    def next_single_panel(self) -> None:
        """In the one-panel layout, show the next of image, mask, overlay."""
        self.set_panel_layout(f"single:{(self.panels.single + 1) % 3}")

    def default_layout(self) -> None:
        """Give the batch dock a quarter of the window's height: the panels get the rest."""
        self.resizeDocks([self.batch_dock], [max(200, self.height() // 4)], Qt.Vertical)

    def _restore_settings(self) -> None:
        geometry = self.settings.value("geometry")
        if isinstance(geometry, QByteArray):
            self.restoreGeometry(geometry)
        else:
            self.resize(*default_size())
        self.set_panel_layout(str(self.settings.value("panel_layout", "side")))
        state = self.settings.value("window_state")
        if isinstance(state, QByteArray):
            self.restoreState(state)
        else:
            QTimer.singleShot(0, self, self.default_layout)  # once the window has its real size
        color = self.settings.value("overlay_color")
        if color:
            self.controls.set_color(QColor(str(color)))
        self.controls.opacity.setValue(int(self.settings.value("overlay_opacity", 45)))
        self.controls.mode.setCurrentText(str(self.settings.value("overlay_mode", "fill")))

    def save_settings(self) -> None:
        self.settings.setValue("geometry", self.saveGeometry())
        self.settings.setValue("window_state", self.saveState())
        self.settings.setValue("overlay_color", self.controls.color.name())
        self.settings.setValue("overlay_opacity", self.controls.opacity.value())
        self.settings.setValue("overlay_mode", self.controls.mode.currentText())
        if self.model is not None:
            meta = self.model.metadata
            keep = thresholds_to_remember(self.thresholds(), meta.pixel_threshold, meta.decision_threshold)
            if keep is None:
                self.settings.remove(f"thresholds/{self.model.name}")
            else:
                self.settings.setValue(f"thresholds/{self.model.name}", keep)
        self.settings.sync()

    def stop_work(self) -> None:
        """Cancel predictions and stop background preparation (its child process is killed)."""
        if self._preparing is not None:
            self._preparing.set()
        self.cancel_predictions()

    def closeEvent(self, event: Any) -> None:
        self.save_settings()
        self.stop_work()
        if not self._closed:
            self._release_full()
            collector.detach()
        self._closed = True
        self._summary_timer.stop()
        super().closeEvent(event)
