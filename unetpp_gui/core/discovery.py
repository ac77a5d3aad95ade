"""Finding slices, their ground truth, and the patient each belongs to.

Conventions (the product's): ``<name>_mask.<ext>`` beside ``<name>.<ext>``, or parallel
``images/`` and ``masks/`` folders with equal file names. Mask files are never slices.
Slices sort in numeric order (``case_2`` before ``case_10``).
"""

from __future__ import annotations

import os
import re
import stat
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from unetpp_gui.core.image_io import IMAGE_SUFFIXES, NOT_REGULAR, SLICE_TAG
from unetpp_gui.core.volume import is_nifti

MASK_SUFFIX = "_mask"
_NUM = re.compile(r"(\d+)")


def natural_key(path: str | Path) -> list[object]:
    """Sort key that orders embedded numbers numerically."""
    parts = _NUM.split(str(path))
    return [int(p) if p.isdigit() else p.lower() for p in parts]


def is_mask_file(path: Path) -> bool:
    if path.stem.lower().endswith(MASK_SUFFIX):
        return True
    return path.parent.name.lower() == "masks"


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def _is_file(path: Path) -> bool:
    """``path.is_file()``, False where the name itself is unusable (too long for the file system)."""
    try:
        return path.is_file()
    except OSError:
        return False


def find_ground_truth(image: str | Path) -> Path | None:
    """The mask file that belongs to ``image``, if one exists (for a NIfTI study's slice: the slice of
    its ``<study>_mask`` volume)."""
    image = Path(image)
    if SLICE_TAG in image.name:
        from unetpp_gui.core.volume import parse_ref, truth_ref

        if parse_ref(image) is not None:
            return truth_ref(image)
    for ext in (image.suffix, *IMAGE_SUFFIXES):
        cand = image.with_name(f"{image.stem}{MASK_SUFFIX}{ext}")
        if _is_file(cand):
            return cand
    if image.parent.name.lower() == "images":
        masks = image.parent.parent / "masks"
        for ext in (image.suffix, *IMAGE_SUFFIXES):
            cand = masks / f"{image.stem}{ext}"
            if _is_file(cand):
                return cand
            cand = masks / f"{image.stem}{MASK_SUFFIX}{ext}"
            if _is_file(cand):
                return cand
    return None


@dataclass
class Discovery:
    """Slices found under some paths, plus what could not be read."""

    slices: list[Path] = field(default_factory=list)
    problems: list[tuple[Path, str]] = field(default_factory=list)
    folders: list[Path] = field(default_factory=list)  # the named paths that were folders, resolved
    #: with ``discover(..., patients=True)``: the patient of each slice (:func:`patients_of`), worked out on the
    #: viewer's discovery worker, off the GUI thread (about 20 ms per 300 slices on a 2-core AVX2 CPU, which the
    #: event loop would otherwise spend when a folder arrives); empty otherwise
    patients: dict[Path, str] = field(default_factory=dict)


def _is_regular(path: Path) -> bool:
    """A regular file (links followed); FIFOs, devices and sockets are not: reading them can block."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def discover(paths: list[str | Path] | tuple[str | Path, ...],
             exclude: list[str | Path] | tuple[str | Path, ...] = (), volumes: bool = False,
             patients: bool = False) -> Discovery:
    """Expand files and folders (recursively) into a naturally sorted list of slices.

    Unreadable folders and missing paths are reported in ``problems``; they never raise.
    Explicitly named files are kept even when their suffix is unknown, so that the user sees
    an error row for them instead of silence. Folders in ``exclude`` (an output folder inside
    the input, say) are not entered; special files (FIFOs, devices, sockets) are skipped. With
    ``volumes``, NIfTI studies (files, or the folders they are in) become one slice path per axial
    slice (``<file>#z012``, :mod:`unetpp_gui.core.volume`); without, NIfTI files are left to the caller.
    With ``patients``, ``Discovery.patients`` names each slice's patient (the viewer's discovery worker).
    """
    found = Discovery()
    skip = {os.path.realpath(e) for e in exclude}
    seen: set[Path] = set()

    def add(p: Path) -> None:
        if p not in seen:
            seen.add(p)
            found.slices.append(p)

    def add_studies(where: list[Path]) -> None:
        from unetpp_gui.core.volume import study_refs

        refs, problems = study_refs(where)
        for ref in refs:
            add(ref)
        found.problems.extend(problems)

    for raw in paths:
        p = Path(raw)
        if is_nifti(p):
            if volumes:
                add_studies([p])
            continue
        if p.is_dir():
            found.folders.append(p.resolve())
            batch: list[Path] = []

            def onerror(err: OSError) -> None:
                found.problems.append((Path(err.filename or p), f"cannot read folder ({err.strerror})"))

            for root, dirs, files in os.walk(p, onerror=onerror):
                dirs[:] = sorted((d for d in dirs if not d.startswith(".")
                                  and os.path.realpath(os.path.join(root, d)) not in skip), key=natural_key)
                if volumes and any(is_nifti(Path(n)) for n in files):
                    add_studies([Path(root)])
                for name in files:
                    fp = Path(root) / name
                    if is_image_file(fp) and not is_mask_file(fp):
                        if _is_regular(fp):
                            batch.append(fp)
                        else:
                            found.problems.append((fp, NOT_REGULAR))
            for fp in sorted(batch, key=natural_key):
                add(fp)
        elif p.is_file():
            if not is_mask_file(p):
                add(p)
        elif p.exists():
            found.problems.append((p, NOT_REGULAR))
        else:
            found.problems.append((p, "no such file or folder"))
    if patients:
        found.patients = patients_of(found.slices)
    return found


_NUMBERED = re.compile(r"^(.*?)[\s_.\-]*\d+$")


def series_of(path: str | Path) -> str:
    """The numbered series a slice belongs to: its file name without the trailing slice number
    (``TCGA_CS_4941_19960909_12.png`` -> ``TCGA_CS_4941_19960909``, ``IM-0001-0012.png`` -> ``IM-0001``).

    A flat folder holding several patients' numbered slices is several patients
    (:func:`patients_in_folder`). A name without a trailing number is a series of its own; a NIfTI
    study's slices are one series.
    """
    name = Path(path).name
    if SLICE_TAG in name:
        return name.split(SLICE_TAG)[0]
    stem = Path(name).stem
    match = _NUMBERED.match(stem)
    return match.group(1) if match else stem


def patients_in_folder(paths: list[Path]) -> dict[Path, str]:
    """The patient of each slice of one folder: the folder's (:func:`patient_of`), unless the folder holds
    two or more numbered series of at least two slices each (a flat folder of several patients,
    ``A_1.png … B_1.png …``): then each of those slices belongs to its series."""
    series = {p: series_of(p) for p in paths if SLICE_TAG not in p.name}
    numbered = {name for name, n in Counter(series.values()).items() if n >= 2 and name}
    mixed = len(numbered) >= 2
    return {p: series[p] if mixed and series.get(p) in numbered else patient_of(p) for p in paths}


def patients_of(paths: list[Path]) -> dict[Path, str]:
    """:func:`patients_in_folder` for slices of any number of folders."""
    by_folder: dict[Path, list[Path]] = {}
    for p in paths:
        by_folder.setdefault(p.parent, []).append(p)
    return {p: name for folder in by_folder.values() for p, name in patients_in_folder(folder).items()}


def patient_of(path: str | Path, prefix_fields: int | None = None) -> str:
    """The patient a slice belongs to.

    By default the slice's folder (``images``/``masks`` folders are skipped upwards). With
    ``prefix_fields=N`` the first N ``_``-separated fields of the file name are used instead,
    for flat folders such as ``TCGA_CS_4941_19960909_12.png`` (N=4).
    """
    path = Path(path)
    if SLICE_TAG in path.name:  # a NIfTI study is one patient
        from unetpp_gui.core.volume import parse_ref, study_name

        ref = parse_ref(path)
        if ref is not None:
            return study_name(ref[0])
    if prefix_fields:
        return "_".join(path.stem.split("_")[:prefix_fields])
    parent = path.parent
    if parent.name.lower() == "images":
        parent = parent.parent
    return parent.name or "."
