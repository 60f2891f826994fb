"""Atomic writes: a reader (or a crashed run) sees the old file or folder, or the complete new one, never half.

    atomic_write(path, lambda tmp: tmp.write_text(text))      a file: written as ``.NAME.tmp``, renamed over ``path``
    atomic_dir(path, lambda tmp: save_files_into(tmp))         a folder: filled under a temporary name, renamed

The temporary names start with a dot and do not end in the final suffix, so no reader globbing ``*.parquet``,
``*.rrd`` or ``step_*`` picks up a partial write; ``remove_temporaries`` deletes the ones a killed process left.
A folder cannot be renamed over a non-empty one, so ``atomic_dir`` replaces a folder in two renames (the old one
aside as ``.NAME.old-*/NAME``, the new one in); a kill between them leaves ``NAME`` missing for a moment:
readers go through ``settled_dir`` (the folder, or the version moved aside) and writers call ``restore_dir``
before they continue (puts it back, deletes the leftovers).

Fault injection (tests): every write passes two crash points, ``fault_point("NAME:written")`` with the complete
temporary on disk and ``fault_point("NAME:renamed")`` after the rename. A test sets ``FAULT_HOOK`` (a function of
the point's name) to raise :class:`Killed` there; a subprocess is killed at its Nth point with the environment
variable ``WORLDMOT_KILL_AT=N``. A ``Killed`` leaves the temporaries behind, as a real kill does.
"""
from __future__ import annotations

import glob
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

KILL_AT_ENV = "WORLDMOT_KILL_AT"


class Killed(BaseException):
    """A simulated kill at a crash point (a BaseException: nothing on the way up handles it)."""


def _kill_at_env() -> Callable[[str], None] | None:
    """The hook for ``WORLDMOT_KILL_AT=N``: SIGKILL this process at its Nth crash point."""
    n = int(os.environ.get(KILL_AT_ENV, "0") or 0)
    if n <= 0:
        return None
    seen = [0]

    def kill(name: str) -> None:
        seen[0] += 1
        if seen[0] == n:
            os.kill(os.getpid(), 9)

    return kill


FAULT_HOOK: Callable[[str], None] | None = _kill_at_env()  # read once, at import


def fault_point(name: str) -> None:
    """A place where a crash must leave recoverable state; a no-op unless a test set ``FAULT_HOOK``."""
    if FAULT_HOOK is not None:
        FAULT_HOOK(name)


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Write through ``write(tmp)`` then rename over ``path``; the temporary file is removed on any error.

    ``write`` must not infer the format from the file name (pass e.g. ``format="png"`` to matplotlib)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        write(tmp)
        fault_point(f"{path.name}:written")
        os.replace(tmp, path)
    except Killed:
        raise  # a kill leaves the temporary behind
    except BaseException:
        if tmp.exists():
            tmp.unlink()
        raise
    fault_point(f"{path.name}:renamed")
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
        fault_point(f"{path.name}/:written")
        if path.exists():
            _remove_leftovers(path, ".old-")  # earlier kills' moved-aside copies: one aside copy at most
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent))
            os.replace(path, old / path.name)
            fault_point(f"{path.name}/:moved-aside")
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except Killed:
        raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fault_point(f"{path.name}/:renamed")
    return path


def settled_dir(path: str | Path) -> Path:
    """The last complete version of a folder ``atomic_dir`` writes: ``path``, or, after a kill between its two
    renames, the previous version it had moved aside (for readers, which must not write)."""
    path = Path(path)
    if path.exists():
        return path
    aside = _moved_aside(path)
    return aside[0] if len(aside) == 1 else path


def restore_dir(path: str | Path) -> None:
    """Undo what a kill inside ``atomic_dir(path)`` left: a version moved aside goes back to ``path`` (if it is
    missing), then the partial and moved-aside temporaries of ``path`` are deleted (for writers, at start)."""
    path = Path(path)
    aside = _moved_aside(path)
    if not path.exists() and len(aside) == 1:
        os.replace(aside[0], path)
    _remove_leftovers(path, ".old-")
    _remove_leftovers(path, ".partial-")


def _moved_aside(path: Path) -> list[Path]:
    return [p / path.name for p in path.parent.glob(f".{glob.escape(path.name)}.old-*") if (p / path.name).is_dir()]


def _remove_leftovers(path: Path, kind: str) -> None:
    for p in path.parent.glob(f".{glob.escape(path.name)}{kind}*"):
        shutil.rmtree(p, ignore_errors=True)


def check_can_create(path: str | Path) -> None:
    """Raise OSError naming ``path`` unless a folder can be made there, before a command starts its work: its
    nearest existing parent is probed with a hidden folder made and removed at once (this catches a file in
    the way, a read-only or a pseudo file system such as /proc, which permission bits do not)."""
    path = Path(path).absolute()
    parent = next(p for p in [path, *path.parents] if p.exists())
    if parent == path:
        return
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".worldmot-probe-", dir=parent))
    except OSError as e:
        raise OSError(e.errno, e.strerror, str(path)) from None


def is_temporary(path: Path) -> bool:
    """A name this module writes through and a killed process can leave: ``.NAME.tmp``, ``.NAME.partial-*``,
    ``.NAME.old-*``."""
    name = path.name
    return name.startswith(".") and (name.endswith(".tmp") or ".partial-" in name or ".old-" in name)


def remove_temporaries(folder: str | Path) -> list[Path]:
    """Delete the temporaries left under ``folder`` by a killed write; returns what was deleted."""
    found = [p for p in Path(folder).rglob(".*") if is_temporary(p)] if Path(folder).is_dir() else []
    for p in found:
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        elif p.exists():
            p.unlink()
    return found


def _fsync_files(folder: Path) -> None:
    for f in folder.rglob("*"):
        if f.is_file():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
