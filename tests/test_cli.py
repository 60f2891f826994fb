"""The ``worldmot`` command line and the installed package layout."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from worldmot.cli import COMMANDS


def test_help_lists_every_command():
    res = subprocess.run([sys.executable, "-m", "worldmot", "--help"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0
    for name in COMMANDS:
        assert re.search(rf"^    {name}(\s|$)", res.stdout, re.M), name


def test_unknown_command_fails():
    res = subprocess.run([sys.executable, "-m", "worldmot", "fly"], capture_output=True, text=True, timeout=60)
    assert res.returncode != 0 and "invalid choice" in res.stderr


def test_envs_datasets_policies_live_inside_worldmot_only(tmp_path):
    """A top-level ``datasets`` package would shadow Hugging Face's for every user: none is installed."""
    code = ("import importlib.util, worldmot.envs, worldmot.datasets, worldmot.policies\n"
            "spec = importlib.util.find_spec('datasets')\n"
            "print('none' if spec is None else spec.origin)\n")
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    origin = res.stdout.strip()
    repo = Path(__file__).resolve().parents[1]
    assert origin == "none" or not Path(origin).resolve().is_relative_to(repo), origin


def test_every_subpackage_is_listed_for_a_wheel_install():
    """The editable install finds any folder; a wheel holds only the packages pyproject.toml lists."""
    import tomllib

    repo = Path(__file__).resolve().parents[1]
    tool = tomllib.loads((repo / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed, dirs = set(tool["packages"]), tool["package-dir"]
    found = set()
    for package, folder in dirs.items():
        for init in (repo / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(repo / folder)
            found.add(".".join([package, *rel.parts]))
    assert found <= listed, f"not in [tool.setuptools] packages: {sorted(found - listed)}"
