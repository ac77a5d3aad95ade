"""Reading slices and masks with Pillow, and writing PNG results.

Every slice comes back as 8-bit RGB (H, W, 3) so that display and preprocessing see one shape;
channel adaptation to the model happens in :mod:`unetpp_gui.core.preprocess`.
"""

from __future__ import annotations

import os
import re
import stat
import struct
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from unetpp_gui.core.atomic import atomic_write_bytes
from unetpp_gui.core.errors import ImageError
from unetpp_gui.core.normalize import channel_peak

#: How a NIfTI study's slice is named (core.volume.SLICE_TAG, kept here so image_io stays light).
SLICE_TAG = "#z"
#: Why a FIFO, device or socket is never opened (reading one can block forever).
NOT_REGULAR = "not a regular file (a FIFO, device or socket); skipped"
TEXT_CHUNK_BOMB = "refused: a PNG text chunk decompresses to too much data (a decompression bomb, or a corrupt file)"
#: Formats we accept as slices. PNG is the product's format; the others are read the same way.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
#: Refuse anything larger than this many pixels before decoding it (decompression-bomb guard).
MAX_PIXELS = 40_000_000
#: Refuse slices smaller than this on either side: they are icons, not MR slices.
MIN_SIDE = 8


def _check_regular(path: Path) -> None:
    """Refuse FIFOs, devices and sockets before opening them: reading one can block forever."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ImageError(path, "file not found") from None
    except PermissionError:
        raise ImageError(path, "permission denied") from None
    except OSError as exc:
        raise ImageError(path, f"cannot be read ({exc.strerror or exc})") from None
    if stat.S_ISDIR(st.st_mode):
        raise ImageError(path, "is a folder, not an image")
    if not stat.S_ISREG(st.st_mode):
        raise ImageError(path, NOT_REGULAR)


def _open(path: Path) -> Image.Image:
    _check_regular(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(path)
    except FileNotFoundError:
        raise ImageError(path, "file not found") from None
    except IsADirectoryError:
        raise ImageError(path, "is a folder, not an image") from None
    except PermissionError:
        raise ImageError(path, "permission denied") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        declared = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"it declares {int(declared.group(1)):,} pixels" if declared else "it declares too many pixels"
        raise ImageError(path, f"too large ({size}; the limit is {MAX_PIXELS:,} pixels)") from None
    except UnidentifiedImageError:
        raise ImageError(path, "not a readable image (unknown format or corrupt header)") from None
    except ValueError as exc:
        if "TEXT_CHUNK" in str(exc) or "text chunk" in str(exc).lower():
            raise ImageError(path, TEXT_CHUNK_BOMB) from None
        raise ImageError(path, f"not a readable image ({exc})") from None
    except (OSError, SyntaxError, struct.error, EOFError) as exc:
        raise ImageError(path, f"cannot be read ({exc})") from None
    w, h = img.size
    if w * h > MAX_PIXELS:
        img.close()
        raise ImageError(path, f"too large ({w}x{h} pixels; the limit is {MAX_PIXELS:,} pixels)")
    if min(w, h) < MIN_SIDE:
        img.close()
        raise ImageError(path, f"too small ({w}x{h} pixels) to be an MR slice")
    return img


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    """Bring 16-bit or float data to 8 bits by the image's own range (MR has no fixed scale)."""
    if arr.dtype == np.uint8:
        return arr
    arr = arr.astype(np.float64)
    lo, hi = float(arr.min()), float(arr.max())
    if hi <= lo:
        return np.zeros(arr.shape, np.uint8)
    return np.round((arr - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def load_image(path: str | Path) -> np.ndarray:
    """Decode ``path`` into an (H, W, 3) uint8 RGB array or raise :class:`ImageError`."""
    path = Path(path)
    if SLICE_TAG in path.name:  # a slice of a NIfTI study (core.volume): "<file>#z012"
        from unetpp_gui.core.volume import VolumeError, parse_ref, slice_image

        if parse_ref(path) is not None:
            try:
                return slice_image(path)
            except VolumeError as exc:
                raise ImageError(path, str(exc).removeprefix(f"{parse_ref(path)[0]}: ")) from None
    img = _open(path)
    try:
        img.load()
        mode = img.mode
        if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
            gray = _to_uint8(np.asarray(img))
            arr = np.repeat(gray[:, :, None], 3, axis=2)
        else:
            if mode in ("RGBA", "LA", "P", "PA"):
                # Composite on black: transparent regions of a slice are background.
                rgba = img.convert("RGBA")
                bg = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
                img = Image.alpha_composite(bg, rgba)
            arr = np.asarray(img.convert("RGB"))
    except ImageError:
        raise
    except (OSError, ValueError, SyntaxError, struct.error, EOFError, IndexError, TypeError,
            ZeroDivisionError, MemoryError) as exc:
        if "TEXT_CHUNK" in str(exc):
            raise ImageError(path, TEXT_CHUNK_BOMB) from None
        raise ImageError(path, f"corrupt or truncated image data ({exc})") from None
    finally:
        img.close()
    return np.ascontiguousarray(arr, dtype=np.uint8)


def load_mask(path: str | Path, threshold: int = 127) -> np.ndarray:
    """Ground-truth mask as a boolean (H, W) array: pixels above ``threshold`` are tumour."""
    rgb = load_image(path)
    return channel_peak(rgb) > threshold


def save_png(path: str | Path, array: np.ndarray) -> None:
    """Save a uint8 gray/RGB/RGBA array (or a bool mask, as 0/255) as PNG, atomically."""
    import io

    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())
