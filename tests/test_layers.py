"""The import layers of pyproject.toml's [tool.importlinter] contracts hold (``lint-imports``).

envs/, datasets/, policies/ and configs/ install inside the worldmot namespace (package-dir), which
import-linter cannot see in the source tree: the check runs on a tree of links laid out as installed.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]


def installed_layout(dest: Path) -> Path:
    """``dest/worldmot/...`` as pyproject's package-dir installs it: links to the source folders and files."""
    package_dir = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    top = dest / "worldmot"
    top.mkdir(parents=True)
    for entry in (ROOT / package_dir["worldmot"]).iterdir():
        if entry.name != "__pycache__":
            (top / entry.name).symlink_to(entry)
    for package, folder in package_dir.items():
        if package != "worldmot":
            (top / package.split(".", 1)[1]).symlink_to(ROOT / folder)
    return dest


def lint_imports(tree: Path) -> subprocess.CompletedProcess:
    linter = Path(sys.executable).parent / "lint-imports"
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run([str(linter), str(ROOT / "pyproject.toml"), "--no-cache"], cwd=tree, env=env,
                          capture_output=True, text=True, timeout=300)


def test_import_contracts_hold(tmp_path):
    res = lint_imports(installed_layout(tmp_path))
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    assert "0 broken" in res.stdout
