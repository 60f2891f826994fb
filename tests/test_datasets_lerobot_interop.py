"""LeRobot's own LeRobotDataset loads worldmot datasets (slow: sets up a separate venv with lerobot)."""
from __future__ import annotations

import ctypes.util
import subprocess
import sys
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parents[1] / "tools" / "checks" / "check_lerobot_interop.py"
VENV = Path("/tmp/lerobot-venv")


@pytest.mark.slow
def test_lerobot_loads_worldmot_datasets():
    if not ctypes.util.find_library("avcodec"):
        pytest.skip("system FFmpeg libraries (needed by LeRobot's torchcodec decoder) are not installed")
    args = [sys.executable, str(TOOL), "--venv", str(VENV)]
    if (VENV / "bin" / "python").exists():
        args.append("--skip-install")
    res = subprocess.run(args, capture_output=True, text=True, timeout=1800)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert '"failed": 0' in res.stdout
