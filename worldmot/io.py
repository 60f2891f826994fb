"""Atomic writes: a reader (or a crashed run) sees the old file or folder, or the complete new one, never half.

    atomic_write(path, lambda tmp: tmp.write_text(text))      a file: written as ``.NAME.tmp``, renamed over ``path``
    atomic_dir(path, lambda tmp: save_files_into(tmp))         a folder: filled under a temporary name, renamed

The temporary names start with a dot and do not end in the final suffix, so no reader globbing ``*.parquet``,
``*.rrd`` or ``step_*`` picks up a partial write.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Write through ``write(tmp)`` then rename over ``path``; the temporary file is removed on any error.

    ``write`` must not infer the format from the file name (pass e.g. ``format="png"`` to matplotlib)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def atomic_dir(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Fill a new temporary folder next to ``path`` through ``write(tmp)``, flush its files to disk, then rename
    it to ``path``. An existing ``path`` is moved aside first and deleted after the rename, so some complete
    version is on disk at every moment."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.partial-", dir=path.parent))
    try:
        write(tmp)
        _fsync_files(tmp)  # the data is on disk before the rename makes the folder visible
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent))
            os.replace(path, old / path.name)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def _fsync_files(folder: Path) -> None:
    for f in folder.rglob("*"):
        if f.is_file():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
