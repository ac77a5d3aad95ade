"""Neighbouring slices as extra input channels ("2.5-D" models).

A model trained with ``--context-slices K`` sees, beside a slice's own channels, one channel (``channel``, by
default FLAIR, the middle one of the LGG slices) of the K slices before it and the K after it in its patient's
stack: channels ``[own..., before_K .. before_1, after_1 .. after_K]``. At the ends of a stack, and for a slice
with no numbered neighbours, the nearest slice that exists stands in (the slice itself at worst), as in training.
Neighbours are found the same way in training and inference: slices of one numbered series (:func:`series_of`)
in one folder, in numeric order; a NIfTI study's slices by their index.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from unetpp_gui.core.discovery import is_image_file, is_mask_file, natural_key, series_of


@dataclass(frozen=True)
class SliceContext:
    """How many neighbours each side (``slices``) and which of their channels (``channel``) a model reads."""

    slices: int
    channel: int = 1

    @property
    def extra_channels(self) -> int:
        return 2 * self.slices

    def to_dict(self) -> dict[str, int]:
        return {"slices": self.slices, "channel": self.channel}

    def describe(self) -> str:
        return f"{self.slices} slice(s) each side, channel {self.channel}"

    @classmethod
    def from_dict(cls, doc: dict[str, Any] | None) -> "SliceContext | None":
        """None for a plain 2-D model ({} or 0 slices); ValueError for a malformed entry."""
        if not doc or not int(doc.get("slices", 0)):
            return None
        ctx = cls(int(doc["slices"]), int(doc.get("channel", 1)))
        if ctx.slices < 0 or ctx.channel < 0:
            raise ValueError(f"input_context {doc!r}: slices and channel must be >= 0")
        return ctx


def neighbour_offsets(index: int, count: int, slices: int) -> list[int]:
    """Indices of the neighbours of ``index`` in a stack of ``count``, in channel order, clamped to the stack."""
    wanted = [index - d for d in range(slices, 0, -1)] + [index + d for d in range(1, slices + 1)]
    return [min(max(i, 0), count - 1) for i in wanted]


@lru_cache(maxsize=16)
def _series_in(folder: Path, mtime_ns: int) -> dict[str, list[str]]:
    """Each numbered series' slice names in ``folder``, in numeric order (kept while the folder is unchanged)."""
    out: dict[str, list[str]] = {}
    for name in os.listdir(folder):
        p = folder / name
        if is_image_file(p) and not is_mask_file(p):
            out.setdefault(series_of(name), []).append(name)
    return {series: sorted(names, key=natural_key) for series, names in out.items()}


def _series_members(path: Path) -> list[Path]:
    """The slices of ``path``'s numbered series in its folder, in numeric order (``[path]`` if unlistable)."""
    try:
        names = _series_in(path.parent, path.parent.stat().st_mtime_ns).get(series_of(path), [])
    except OSError:
        return [path]
    members = [path.parent / n for n in names]
    return members if path in members else sorted([*members, path], key=natural_key)


def neighbour_paths(path: str | Path, slices: int) -> list[Path]:
    """The ``2 * slices`` neighbours of a slice file (or NIfTI slice reference), in channel order."""
    from unetpp_gui.core.volume import axial_slices, parse_ref, slice_ref

    path = Path(path)
    ref = parse_ref(path)
    if ref is not None:
        file, k = ref
        return [slice_ref(file, i) for i in neighbour_offsets(k, axial_slices(file), slices)]
    members = _series_members(path)
    index = members.index(path)
    return [members[i] for i in neighbour_offsets(index, len(members), slices)]


def stack_neighbours(x: np.ndarray, neighbours: Sequence[np.ndarray], channel: int) -> np.ndarray:
    """A slice's prepared input (H, W, C) with one channel of each prepared neighbour appended."""
    if not neighbours:
        return x
    return np.concatenate([x, *(n[..., channel:channel + 1] for n in neighbours)], axis=-1)


def neighbour_indices(paths: Sequence[Path], slices: int) -> np.ndarray:
    """The index of each slice's neighbours among ``paths`` (N, 2 * slices), found as :func:`neighbour_paths`
    finds them on disk but only among these slices (training arrays)."""
    groups: dict[tuple[Path, str], list[int]] = {}
    for i, p in enumerate(paths):
        groups.setdefault((p.parent, series_of(p)), []).append(i)
    out = np.zeros((len(paths), 2 * slices), np.int64)
    for members in groups.values():
        members.sort(key=lambda i: natural_key(paths[i]))
        for pos, i in enumerate(members):
            out[i] = [members[j] for j in neighbour_offsets(pos, len(members), slices)]
    return out
