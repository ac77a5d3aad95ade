"""Result rows and CSV files shared by the CLI and the batch view."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Iterable, Sequence

from unetpp_gui.core.atomic import atomic_write_bytes
from unetpp_gui.core.inference import SliceResult

COLUMNS = (
    "path", "width", "height", "area_ratio", "decision", "max_prob", "mask_pixels",
    "dice", "iou", "ground_truth", "mask", "overlay", "warning", "error",
)


def row_for(result: SliceResult, pixel_threshold: float, decision_threshold: float,
            out: Path | None = None) -> dict[str, object]:
    """One CSV/table row for a slice at the given thresholds (output files relative to ``out``).

    ``area_ratio`` is a fraction of the slice's pixels (0.001 = 0.1 %), as are the decision thresholds.
    """
    row: dict[str, object] = {c: "" for c in COLUMNS}
    row["path"] = str(result.path)
    row["warning"] = result.warning or ""
    if not result.ok or result.stats is None:
        row["error"] = result.error or "not predicted"
        return row
    for kind, written in result.outputs.items():
        row[kind] = str(written.relative_to(out)) if out is not None and written.is_relative_to(out) else str(written)
    row["error"] = result.write_error or ""
    d = result.stats.derive(pixel_threshold, decision_threshold)
    if result.size is not None:
        row["width"], row["height"] = result.size
    row.update(
        area_ratio=f"{d.area_ratio:.6f}",
        decision="tumour" if d.tumour else "no tumour",
        max_prob=f"{d.max_prob:.4f}",
        mask_pixels=d.mask_pixels,
        ground_truth=str(result.gt_path) if result.gt_path else "",
    )
    if d.dice is not None:
        row["dice"] = f"{d.dice:.4f}"
        row["iou"] = f"{d.iou:.4f}"
    return row


def csv_text(rows: Iterable[dict[str, object]], columns: Sequence[str] = COLUMNS) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(row)
    return buf.getvalue()


def write_csv(path: str | Path, rows: Iterable[dict[str, object]], columns: Sequence[str] = COLUMNS) -> None:
    """Write the CSV atomically: an interrupted export never leaves half a file."""
    atomic_write_bytes(path, csv_text(rows, columns).encode("utf-8"))
