"""Open a written .rrd: the command to print, the web viewer (``--serve``), the native viewer (``--spawn``).

Both viewers are the ``rerun`` binary that ships with rerun-sdk (the one of this interpreter's environment).
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from worldmot.errors import WorldmotError


def rerun_binary() -> str:
    """The viewer binary: $RERUN_CLI_PATH, the one inside the installed rerun_cli package, or ``rerun`` on PATH."""
    if os.environ.get("RERUN_CLI_PATH"):
        return os.environ["RERUN_CLI_PATH"]
    try:
        import rerun_cli

        d = Path(rerun_cli.__file__).parent
        for cand in (d / "Rerun.app" / "Contents" / "MacOS" / "Rerun", d / "rerun", d / "rerun.exe"):
            if cand.is_file():
                return str(cand)
    except ImportError:
        pass
    found = shutil.which("rerun")
    if found is None:
        raise WorldmotError("rerun: viewer binary not found (expected rerun_cli/rerun from the rerun-sdk package)")
    return found


def open_hint(path: Path) -> str:
    return f"rerun {path}"


def serve_command(path: Path, bind: str = "127.0.0.1", web_port: int = 9090, grpc_port: int = 9876) -> list[str]:
    """The web viewer and its gRPC server, both listening on ``bind`` only (localhost unless told otherwise)."""
    return [rerun_binary(), "--serve-web", "--bind", bind, "--web-viewer-port", str(web_port),
            "--port", str(grpc_port), str(path)]


def has_display() -> bool:
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def check_display(path: Path) -> None:
    if not has_display():
        raise WorldmotError(f"--spawn: no display (DISPLAY and WAYLAND_DISPLAY are unset); run `{open_hint(path)}` "
                            "where there is one, or use --serve and open the address in a browser")


def serve(path: Path, bind: str = "127.0.0.1", web_port: int = 9090, grpc_port: int = 9876) -> int:
    """Serve ``path`` to browsers until Ctrl-C or SIGTERM (the server stops with this process); returns 0
    then, or the server's own exit status if it stops by itself (a port in use, ...)."""
    host = f"[{bind}]" if ":" in bind else bind
    print(f"serving {path} at http://{host}:{web_port} (Ctrl-C stops)", flush=True)
    previous = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, _interrupt)
    proc = subprocess.Popen(serve_command(path, bind, web_port, grpc_port),
                            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def spawn(path: Path) -> None:
    """Open ``path`` in the native viewer, detached from this process."""
    check_display(path)
    subprocess.Popen([rerun_binary(), str(path)], start_new_session=True,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _die_with_parent() -> None:
    """In the server's process (Linux): receive SIGTERM when the parent dies, even by SIGKILL."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
