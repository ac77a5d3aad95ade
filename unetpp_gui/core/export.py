"""Writing masks and overlays for many slices: shared by ``unetpp predict`` and the GUI batch export."""

from __future__ import annotations

import hashlib
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Sequence

from unetpp_gui.core.image_io import save_png
from unetpp_gui.core.consistency import PatientFilter
from unetpp_gui.core.errors import UserFacingError
from unetpp_gui.core.inference import SliceResult, predict_patients
from unetpp_gui.core.model_io import LoadedModel
from unetpp_gui.core.overlay import DEFAULT_COLOR, render_overlay
from unetpp_gui.core.postprocess import binarize

if TYPE_CHECKING:
    from unetpp_gui.core.batching import Trial


#: Longest file name most file systems allow (bytes).
NAME_MAX = 255


class OutputNames:
    """Where a slice's outputs go under ``out``: its place under its input folder is mirrored, so
    equal names in different folders never collide. Slices that share a stem in one folder
    (``dup.png``, ``dup.tif``) keep their extension in the name (``dup_tif_pred.png``); a name that
    would pass the 255-byte limit is shortened, with a hash of the full name kept in it."""

    def __init__(self, out: Path, roots: Sequence[Path], paths: Sequence[Path] = ()) -> None:
        self.out, self.roots = out, [Path(r) for r in roots]
        seen: dict[tuple[Path, str], int] = {}
        for p in paths:
            key = (p.parent, p.stem.lower())
            seen[key] = seen.get(key, 0) + 1
        self._shared = {k for k, n in seen.items() if n > 1}

    def _folder(self, path: Path) -> Path:
        for root in self.roots:
            if root.is_dir():
                try:
                    rel = path.relative_to(root)
                except ValueError:
                    continue
                return self.out / root.name / rel.parent
        return self.out

    def _stem(self, path: Path) -> str:
        stem = path.stem
        if (path.parent, stem.lower()) in self._shared:
            stem = f"{stem}_{path.suffix.lstrip('.').lower()}"
        longest = len("_overlay.png".encode())
        if len(stem.encode()) + longest > NAME_MAX:
            digest = hashlib.sha1(path.name.encode("utf-8", "surrogateescape")).hexdigest()[:10]
            keep = stem.encode()[: NAME_MAX - longest - 12].decode("utf-8", "ignore")
            stem = f"{keep}~{digest}"
        return stem

    def path(self, path: Path, suffix: str) -> Path:
        return self._folder(path) / f"{self._stem(path)}{suffix}"


class OutputError(UserFacingError):
    """The output folder cannot be used (checked before any model is loaded)."""


RESULTS_CSV = "results.csv"


def prepare_output_folder(out: Path, overwrite: bool = False) -> list[Path]:
    """Make sure ``out`` is a writable folder that holds no other run; returns files removed.

    An earlier run's ``results.csv`` is refused unless ``overwrite``: then that run's masks and
    overlays (the files its CSV names, or every ``*_pred.png``/``*_overlay.png`` for a CSV without
    those columns) and the CSV go, so the new ``results.csv`` describes exactly the files beside it.
    """
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out} exists and is not a folder; give a folder path")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise OutputError(f"--out {out}: a part of that path is a file, not a folder") from None
    except OSError as exc:
        raise OutputError(f"--out {out} cannot be created ({exc.strerror or exc})") from None
    try:
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as exc:
        raise OutputError(f"--out {out} is not writable ({exc.strerror or exc})") from None
    csv_path = out / RESULTS_CSV
    if not csv_path.exists():
        return []
    if not overwrite:
        raise OutputError(f"--out {out} holds an earlier run ({RESULTS_CSV}); choose another folder, or add "
                          "--overwrite to replace that run's results and masks")
    return _remove_run(out, csv_path)


def _remove_run(out: Path, csv_path: Path) -> list[Path]:
    import csv

    root = out.resolve()
    listed: list[Path] = []
    has_columns = False
    tables = [csv_path, out / "volumes.csv"]
    for table in tables:
        try:
            with table.open(newline="", encoding="utf-8", errors="replace") as f:
                reader = csv.DictReader(f)
                has_columns = has_columns or bool(reader.fieldnames and "mask" in reader.fieldnames)
                for row in reader:
                    listed += [out / row[k] for k in ("mask", "overlay", "probability") if row.get(k)]
        except (OSError, csv.Error):
            pass
    if not has_columns:
        listed = [p for pattern in ("*_pred.png", "*_overlay.png") for p in out.rglob(pattern)]
    removed = []
    for p in [*dict.fromkeys(listed), *tables]:
        try:
            if p.resolve().is_relative_to(root) and p.is_file():
                p.unlink()
                removed.append(p)
        except OSError:
            pass
    return removed


def output_path(out: Path, path: Path, roots: Sequence[Path], suffix: str) -> Path:
    """Where one slice's output goes (see :class:`OutputNames`)."""
    return OutputNames(out, roots).path(path, suffix)


def write_masks(
    model: LoadedModel,
    paths: Sequence[Path],
    out: Path,
    roots: Sequence[Path],
    pixel_threshold: float,
    overlay: bool = True,
    color: tuple[int, int, int] = DEFAULT_COLOR,
    opacity: float = 0.45,
    batch_size: "int | Trial" = 8,
    cancel: threading.Event | None = None,
    patient_filter: PatientFilter | None = None,
) -> Iterator[SliceResult]:
    """Predict ``paths`` and write ``<name>_pred.png`` (and ``_overlay.png``) under ``out``.

    Yields each result after its files are written (atomically), so a cancelled run leaves only
    complete files. The yielded results keep compact stats only, and ``outputs`` names the files
    written; a file that cannot be written sets ``write_error`` and the run goes on. With
    ``patient_filter`` each patient's slices are filtered together
    (:func:`~unetpp_gui.core.inference.predict_patients`).
    """
    names = OutputNames(out, roots, paths)
    for res in predict_patients(model, paths, pixel_threshold, patient_filter, batch_size, keep_maps=True,
                                cancel=cancel):
        if res.ok and res.prob_q is not None and res.image is not None:
            mask = binarize(res.prob_q, pixel_threshold)
            try:
                target = names.path(res.path, "_pred.png")
                save_png(target, mask)
                res.outputs["mask"] = target
                if overlay:
                    target = names.path(res.path, "_overlay.png")
                    save_png(target, render_overlay(res.image, mask, color, opacity, gt_mask=res.gt))
                    res.outputs["overlay"] = target
            except OSError as exc:
                res.write_error = f"could not write {target.name}: {exc.strerror or exc}"
        res.image = res.prob_q = res.gt = None
        yield res
