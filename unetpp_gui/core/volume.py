"""NIfTI studies: read a multi-channel MR volume, cut it into the axial slices the model knows, and write
the predicted mask back with exactly the input's geometry.

Conventions (documented in README, "Using your own scans"):

- A study is one 4-D file whose last axis holds the model's channels in the model's order (the bundled
  model: pre-contrast, FLAIR, post-contrast), or one 3-D file per channel named ``<study>_pre``,
  ``<study>_flair`` and ``<study>_post`` (``.nii`` or ``.nii.gz``), given together or as their folder.
  Channel files must share shape and affine (within 1e-3 mm).
- Slices are axial whatever the file's orientation: the volume is reoriented to RAS+ (nibabel), and each
  axial slice is shown as the LGG slices are, radiologically (patient's right on the image's left,
  anterior at the top). Slice index = position along the inferior-to-superior axis.
- Intensities (any unit, integer or float) are mapped per volume and channel: 0 stays 0, the 99.5th
  percentile of the channel's non-zero voxels becomes 255 (above it: clipped); unscaled 8-bit data is
  taken as it is. The model's own normalisation is applied to each slice afterwards, as for a PNG.
- The mask is written as ``<study>_pred.nii.gz``: uint8 0/1 with the input's shape, affine, and qform /
  sform codes, so it overlays the scan in 3D Slicer or ITK-SNAP without resampling.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from unetpp_gui.core.errors import UserFacingError

NIFTI_SUFFIXES = (".nii", ".nii.gz")
#: The bundled model's channels, in order, and the file-name suffixes that name them.
CHANNEL_NAMES = ("pre", "flair", "post")
#: Refuse volumes larger than this many voxels per channel (a 512x512x400 study is 105 M).
MAX_VOXELS = 120_000_000
#: Percentile of a channel's non-zero voxels that maps to 255.
HIGH_PERCENTILE = 99.5
AFFINE_TOLERANCE_MM = 1e-3


class VolumeError(UserFacingError):
    """A study cannot be read or does not fit the model."""


def is_nifti(path: str | Path) -> bool:
    name = str(path).lower()
    return any(name.endswith(s) for s in NIFTI_SUFFIXES)


def _stem(path: str | Path) -> str:
    """The file name without ``.nii`` / ``.nii.gz``."""
    name = Path(path).name
    for suffix in NIFTI_SUFFIXES[::-1]:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


_CHANNEL = re.compile(rf"_({'|'.join(CHANNEL_NAMES)})$", re.IGNORECASE)


def study_name(path: str | Path) -> str:
    """``case_flair.nii.gz`` -> ``case``; ``study.nii`` -> ``study``."""
    return _CHANNEL.sub("", _stem(path))


def channel_of(path: str | Path) -> str | None:
    m = _CHANNEL.search(_stem(path))
    return m.group(1).lower() if m else None


@dataclass
class StudySource:
    """The files of one study: one 4-D file, or one 3-D file per channel (in channel order)."""

    name: str
    files: list[Path]
    mask: Path | None = None  # ground truth found beside it (<name>_mask.nii[.gz])


def group_studies(paths: Sequence[str | Path]) -> tuple[list[StudySource], list[tuple[Path, str]]]:
    """NIfTI files and folders -> studies. Channel files are grouped by study name; a ground-truth
    ``<name>_mask`` file is attached, never treated as a study. Returns (studies, problems)."""
    files: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            files += sorted(f for f in p.iterdir() if f.is_file() and is_nifti(f))
        elif is_nifti(p):
            files.append(p)
    masks = {study_name(f)[: -len("_mask")]: f for f in files if study_name(f).lower().endswith("_mask")}
    groups: dict[tuple[Path, str], list[Path]] = {}
    for f in files:
        if study_name(f).lower().endswith("_mask"):
            continue
        groups.setdefault((f.parent, study_name(f)), []).append(f)
    studies, problems = [], []
    for (folder, name), members in groups.items():
        by_channel = {channel_of(f): f for f in members}
        if None in by_channel and len(members) == 1:
            studies.append(StudySource(name, members, masks.get(name)))
            continue
        missing = [c for c in CHANNEL_NAMES if c not in by_channel]
        if missing:
            problems.append((folder / name, f"study {name}: channel file(s) missing: "
                             + ", ".join(f"{name}_{c}.nii.gz" for c in missing)
                             + f" (the model needs {', '.join(CHANNEL_NAMES)})"))
            continue
        studies.append(StudySource(name, [by_channel[c] for c in CHANNEL_NAMES], masks.get(name)))
    return studies, problems


@dataclass
class Study:
    """A study in canonical (RAS+) voxel order, as uint8 channels, plus what is needed to write back."""

    name: str
    source: StudySource
    channels: np.ndarray  # (X, Y, Z, C) uint8, RAS+
    reference: object  # the first input image (nibabel), whose geometry the outputs copy
    zooms_mm: tuple[float, float, float]
    truth: np.ndarray | None = None  # (X, Y, Z) bool, RAS+
    warnings: list[str] = field(default_factory=list)

    @property
    def n_slices(self) -> int:
        return int(self.channels.shape[2])

    def slices(self) -> Iterator[np.ndarray]:
        """Axial slices as (H, W, C) uint8 images, inferior to superior, shown radiologically."""
        for k in range(self.n_slices):
            yield np.ascontiguousarray(to_display(self.channels[:, :, k]))

    def truth_slice(self, k: int) -> np.ndarray | None:
        return None if self.truth is None else np.ascontiguousarray(to_display(self.truth[:, :, k]))

    @property
    def voxel_ml(self) -> float:
        return float(np.prod(self.zooms_mm)) / 1000.0


def to_display(ras_slice: np.ndarray) -> np.ndarray:
    """An axial RAS+ slice (x, y[, c]) as an image (row, col[, c]): anterior at the top, the patient's
    right on the left."""
    return np.swapaxes(ras_slice[::-1, ::-1], 0, 1)


def from_display(image: np.ndarray) -> np.ndarray:
    """Inverse of :func:`to_display`."""
    return np.swapaxes(image, 0, 1)[::-1, ::-1]


def _load(path: Path):  # -> nibabel image
    import nibabel as nib

    try:
        img = nib.load(str(path))
    except FileNotFoundError:
        raise VolumeError(f"{path}: file not found") from None
    except Exception as exc:  # nibabel raises many kinds for a broken header
        raise VolumeError(f"{path}: not a readable NIfTI file ({str(exc).splitlines()[0][:200]})") from None
    shape = tuple(int(s) for s in img.shape)
    if len(shape) < 3 or len(shape) > 4:
        raise VolumeError(f"{path}: a {len(shape)}-D image {shape}; a study is 3-D (one channel) or 4-D "
                          "(channels last)")
    if int(np.prod(shape[:3])) > MAX_VOXELS:
        raise VolumeError(f"{path}: too large ({'x'.join(map(str, shape))} voxels; the limit is "
                          f"{MAX_VOXELS:,} per channel)")
    return img


def _canonical_data(img, path: Path) -> np.ndarray:
    import nibabel as nib

    try:
        canon = nib.as_closest_canonical(img)
        data = np.asarray(canon.dataobj, dtype=np.float32)
    except (OSError, EOFError, ValueError, MemoryError) as exc:
        raise VolumeError(f"{path}: the image data cannot be read (truncated or corrupt: "
                          f"{str(exc).splitlines()[0][:160]})") from None
    except Exception as exc:
        raise VolumeError(f"{path}: the image data cannot be read ({type(exc).__name__})") from None
    if not np.isfinite(data).all():
        raise VolumeError(f"{path}: contains NaN or infinite values; replace them (e.g. with 0) first")
    return data


def to_uint8(channel: np.ndarray) -> np.ndarray:
    """Map one channel's intensities to 0..255: 0 stays 0, the 99.5th percentile of non-zero voxels -> 255."""
    positive = channel[channel > 0]
    if positive.size == 0:
        return np.zeros(channel.shape, np.uint8)
    high = float(np.percentile(positive, HIGH_PERCENTILE))
    if high <= 0:
        return np.zeros(channel.shape, np.uint8)
    return np.clip(np.rint(np.maximum(channel, 0) * (255.0 / high)), 0, 255).astype(np.uint8)


def _canonical_zooms(img) -> tuple[float, float, float]:
    """Voxel size (mm) along R, A, S, from the header alone (no reorientation of the data)."""
    from nibabel.orientations import io_orientation

    zooms = img.header.get_zooms()[:3]
    out = [0.0, 0.0, 0.0]
    for axis, (target, _flip) in enumerate(io_orientation(img.affine)):
        out[int(target)] = float(zooms[axis])
    return out[0], out[1], out[2]


def _is_plain_uint8(img) -> bool:
    slope, inter = img.header.get_slope_inter()
    return img.get_data_dtype() == np.uint8 and slope in (None, 1.0) and inter in (None, 0.0)


def read_study(source: StudySource, channels: int = 3) -> Study:
    """Read, check and convert a study for a model with ``channels`` input channels."""
    images = [_load(f) for f in source.files]
    first = images[0]
    if len(images) == 1:
        shape = first.shape
        if len(shape) == 3 or shape[3] == 1:
            if channels != 1:
                raise VolumeError(f"{source.files[0]}: one channel, but the model needs {channels} "
                                  f"({', '.join(CHANNEL_NAMES[:channels])}); give a 4-D file or "
                                  f"{source.name}_pre / _flair / _post files")
        elif shape[3] != channels:
            raise VolumeError(f"{source.files[0]}: {shape[3]} channels, but the model needs {channels} "
                              f"({', '.join(CHANNEL_NAMES[:channels])}, in that order)")
    else:
        for f, img in zip(source.files[1:], images[1:]):
            if img.shape[:3] != first.shape[:3] or len(img.shape) != 3:
                raise VolumeError(f"{f}: shape {img.shape} differs from {source.files[0].name} {first.shape}")
            if not np.allclose(img.affine, first.affine, atol=AFFINE_TOLERANCE_MM):
                raise VolumeError(f"{f}: its position in space (affine) differs from {source.files[0].name}; "
                                  "resample the channels onto one grid first")
    if len(images) == 1:
        data = _canonical_data(first, source.files[0])
        data = data[..., None] if data.ndim == 3 else data
    else:
        data = np.stack([_canonical_data(img, f) for img, f in zip(images, source.files)], axis=-1)
    if all(_is_plain_uint8(img) for img in images):  # already 8-bit display values: taken as they are
        chans = data.astype(np.uint8)
    else:
        chans = np.stack([to_uint8(data[..., c]) for c in range(data.shape[-1])], axis=-1)
    study = Study(source.name, source, chans, first, _canonical_zooms(first))  # type: ignore[arg-type]
    if source.mask is not None:
        study.truth = _read_truth(source.mask, first, study)
    return study


def _read_truth(path: Path, reference, study: Study) -> np.ndarray | None:
    try:
        img = _load(path)
    except VolumeError as exc:
        study.warnings.append(f"ground truth ignored: {exc}")
        return None
    if img.shape[:3] != reference.shape[:3] or not np.allclose(img.affine, reference.affine, atol=AFFINE_TOLERANCE_MM):
        study.warnings.append(f"ground truth ignored: {path.name} does not share the study's grid")
        return None
    return _truth_data(img, path)


def _truth_data(img, path: Path) -> np.ndarray:
    """A ground-truth volume as bool, RAS+ (a 4-D file's first channel)."""
    data = _canonical_data(img, path)
    return (data[..., 0] if data.ndim == 4 else data) > 0.5


def write_like(reference, ras_volume: np.ndarray, path: Path, dtype: type = np.uint8) -> Path:
    """Write a RAS+ volume in ``reference``'s voxel order, shape, affine and qform/sform codes."""
    import nibabel as nib
    from nibabel.orientations import apply_orientation, axcodes2ornt, io_orientation, ornt_transform

    transform = ornt_transform(axcodes2ornt(("R", "A", "S")), io_orientation(reference.affine))
    data = apply_orientation(ras_volume, transform).astype(dtype)
    header = reference.header.copy()
    header.set_data_dtype(dtype)
    out = nib.Nifti1Image(data, reference.affine, header=header)
    out.set_qform(reference.get_qform(), code=int(reference.header["qform_code"]))
    out.set_sform(reference.get_sform(), code=int(reference.header["sform_code"]))
    out.header.set_slope_inter(1.0, 0.0)
    from unetpp_gui.core.atomic import atomic_path

    with atomic_path(path, suffix=".nii.gz" if str(path).endswith(".gz") else ".nii") as tmp:
        nib.save(out, str(tmp))
    return path


@dataclass
class VolumeResult:
    """What one study gave: the mask (RAS+), its numbers, the files written."""

    name: str
    source: Path
    shape: tuple[int, ...] = ()
    voxel_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    tumour_voxels: int = 0
    tumour_ml: float = 0.0
    slices_with_tumour: int = 0
    largest_slice: int | None = None
    largest_slice_area_ratio: float = 0.0
    dice: float | None = None
    mask_file: Path | None = None
    prob_file: Path | None = None
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    slice_results: list = field(default_factory=list)  # per-slice SliceResults (compact), slice order


VOLUME_COLUMNS = ("path", "shape", "voxel_mm", "tumour_ml", "tumour_voxels", "slices", "slices_with_tumour",
                  "largest_slice", "largest_slice_area_ratio", "dice", "mask", "probability", "warning", "error")


def volume_row(v: VolumeResult, out: Path | None = None) -> dict[str, object]:
    """One ``volumes.csv`` row (documented in README, "Using your own scans")."""
    def rel(p: Path | None) -> str:
        if p is None:
            return ""
        return str(p.relative_to(out)) if out is not None and p.is_relative_to(out) else str(p)

    return {
        "path": str(v.source), "shape": "x".join(map(str, v.shape)),
        "voxel_mm": "x".join(f"{z:.3g}" for z in v.voxel_mm) if v.shape else "",
        "tumour_ml": f"{v.tumour_ml:.3f}" if not v.error else "", "tumour_voxels": v.tumour_voxels if not v.error else "",
        "slices": len(v.slice_results) if not v.error else "",
        "slices_with_tumour": v.slices_with_tumour if not v.error else "",
        "largest_slice": "" if v.largest_slice is None else v.largest_slice,
        "largest_slice_area_ratio": f"{v.largest_slice_area_ratio:.6f}" if v.largest_slice is not None else "",
        "dice": "" if v.dice is None else f"{v.dice:.4f}", "mask": rel(v.mask_file), "probability": rel(v.prob_file),
        "warning": "; ".join(v.warnings), "error": v.error or "",
    }


# ----- a study's slices as paths, for the GUI's slice list: "<first file>#z012" ---------------------------------
from unetpp_gui.core.image_io import SLICE_TAG  # noqa: E402
_CACHE_SIZE = 2
_cache: "OrderedDict[tuple[str, int, int], Study | np.ndarray]" = OrderedDict()
_cache_lock = threading.Lock()


def slice_ref(file: str | Path, k: int) -> Path:
    return Path(f"{file}{SLICE_TAG}{k:03d}")


def parse_ref(path: str | Path) -> tuple[Path, int] | None:
    """``(file, slice index)`` for a study slice's path, None for an ordinary file."""
    text = str(path)
    i = text.rfind(SLICE_TAG)
    if i < 0 or not is_nifti(text[:i]) or not text[i + len(SLICE_TAG):].isdigit():
        return None
    return Path(text[:i]), int(text[i + len(SLICE_TAG):])


def _version(file: Path) -> tuple[str, int, int]:
    """A study file's identity while it is unchanged: (resolved path, mtime in ns, size); VolumeError if unreadable."""
    try:
        st = file.stat()
        return str(file.resolve()), st.st_mtime_ns, st.st_size
    except FileNotFoundError:
        raise VolumeError(f"{file}: file not found") from None
    except OSError as exc:
        raise VolumeError(f"{file}: {exc.strerror or exc}") from None


def axial_slices(file: str | Path) -> int:
    """How many axial slices a study file has (header only, read once while the file is unchanged)."""
    return _axial_slices(*_version(Path(file)))


@lru_cache(maxsize=64)
def _axial_slices(file: str, mtime_ns: int, size: int) -> int:
    from nibabel.orientations import io_orientation

    img = _load(Path(file))
    axis = int(np.flatnonzero(io_orientation(img.affine)[:, 0] == 2)[0])
    return int(img.shape[axis])


def _cached(key_file: Path, make):  # -> Study | np.ndarray
    key = _version(key_file)
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    value = make()
    with _cache_lock:
        _cache[key] = value
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return value


def study_of(file: str | Path) -> Study:
    """The study whose first file is ``file`` (read once, kept for the next slices)."""
    file = Path(file)

    def make() -> Study:
        studies, problems = group_studies([file.parent])
        for s in studies:
            if file in s.files:
                return read_study(s)
        why = next((w for p, w in problems if study_name(p) == study_name(file)), "not a complete study")
        raise VolumeError(f"{file}: {why}")

    return _cached(file, make)  # type: ignore[return-value]


def _truth_of(file: Path) -> np.ndarray:
    return _cached(file, lambda: _truth_data(_load(file), file))  # type: ignore[return-value]


def slice_image(path: str | Path) -> np.ndarray:
    """A study slice's (H, W, 3) uint8 image; a ground-truth file's slice comes back as 0/255 gray."""
    ref = parse_ref(path)
    if ref is None:
        raise VolumeError(f"{path}: not a study slice")
    file, k = ref
    if study_name(file).lower().endswith("_mask"):
        truth = _truth_of(file)
        if not 0 <= k < truth.shape[2]:
            raise VolumeError(f"{path}: the study has {truth.shape[2]} slices")
        return np.repeat(to_display(truth[:, :, k]).astype(np.uint8)[:, :, None] * 255, 3, axis=2)
    study = study_of(file)
    if not 0 <= k < study.n_slices:
        raise VolumeError(f"{path}: the study has {study.n_slices} slices")
    return np.ascontiguousarray(to_display(study.channels[:, :, k]))


def truth_ref(path: str | Path) -> Path | None:
    """The ground-truth slice that belongs to a study slice (its study's ``_mask`` file), if any."""
    ref = parse_ref(path)
    if ref is None:
        return None
    file, k = ref
    try:
        mask = study_of(file).source.mask  # the study is cached: its slice was just read
    except VolumeError:
        return None
    return slice_ref(mask, k) if mask is not None else None


def voxel_ml_of(path: str | Path) -> float | None:
    """mL per voxel of the study a slice path belongs to (None for an ordinary slice)."""
    ref = parse_ref(path)
    if ref is None:
        return None
    try:
        import nibabel as nib

        return float(np.prod(nib.load(str(ref[0])).header.get_zooms()[:3])) / 1000.0
    except Exception:
        return None


def study_refs(paths: Sequence[str | Path]) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Every slice of every study found in ``paths`` (files or folders, one level), as slice paths."""
    studies, problems = group_studies(paths)
    refs: list[Path] = []
    for s in studies:
        try:
            refs += [slice_ref(s.files[0], k) for k in range(axial_slices(s.files[0]))]
        except VolumeError as exc:
            problems.append((s.files[0], str(exc)))
    return refs, problems
