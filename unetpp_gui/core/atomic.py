"""Atomic file replacement: write a temporary file beside the target, then rename it over."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def atomic_path(path: str | Path, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path in ``path``'s folder; on success it replaces ``path``, on error it is removed.

    The result gets ordinary permissions (0666 less the umask), not ``mkstemp``'s 0600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # a short prefix: a temp name built from a long file name would exceed the 255-byte limit
    fd, name = tempfile.mkstemp(prefix=f".{path.name[:32]}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: readers see the old file or the new one, never half."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
