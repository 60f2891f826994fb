"""Hugging Face Hub dataset ids (``lerobot/pusht@rev``) wherever a dataset is named, read from the standard
Hugging Face cache. No network: the cache is laid out here as huggingface_hub lays it out, and the commands run
with HF_HUB_OFFLINE=1 in a subprocess (huggingface_hub reads its environment once, at import)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from datasets_helpers import features, write_dataset
from worldmot.datasets.hub import HUB_ID, _video_patterns

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def hf_home(tmp_path_factory) -> Path:
    """HF_HOME whose hub cache holds the dataset ``someone/two-cams`` at branch main and tag v3.0."""
    home = tmp_path_factory.mktemp("hf")
    repo = home / "hub" / "datasets--someone--two-cams"
    write_dataset(repo / "snapshots" / COMMIT, [12, 9, 14, 10, 11], features(cams=("top", "wrist"), size=(16, 16)))
    (repo / "refs").mkdir()
    for ref in ("main", "v3.0"):
        (repo / "refs" / ref).write_text(COMMIT)
    return home


def worldmot(hf_home: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1"}
    env.pop("HF_HUB_CACHE", None)
    return subprocess.run([sys.executable, "-m", "worldmot", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def test_train_and_viz_read_a_hub_id_from_the_cache(hf_home, tmp_path):
    small = ["model.width=32", "model.depth=2", "model.heads=2", "model.sequence.image_size=16",
             "model.sequence.patch_size=4", "model.sequence.chunk=2", "batch_size=4", "data.num_workers=0",
             "steps=2", "val.batches=1", "val.every=2", "threads=1"]
    res = worldmot(hf_home, "train", "data.root=someone/two-cams@v3.0", "run_dir=run",
                   "data.camera=observation.images.wrist", *small, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file()
    res = worldmot(hf_home, "viz", "dataset", "someone/two-cams", "--episodes", "0", cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    assert (tmp_path / "two-cams.rrd").stat().st_size > 0


def test_an_id_that_is_not_there_is_one_clear_error(hf_home, tmp_path):
    for name in ("someone/nothing", "someone/two-cams@v9"):
        res = worldmot(hf_home, "viz", "dataset", name, "--out", "x.rrd", cwd=tmp_path)
        assert res.returncode == 2, res.stderr
        assert res.stderr.count("\n") == 1 and name in res.stderr and "Hugging Face cache" in res.stderr
        assert not (tmp_path / "x.rrd").exists()


def test_a_local_folder_wins_over_an_id(hf_home, tmp_path):
    local = tmp_path / "someone" / "two-cams"
    shutil.copytree(hf_home / "hub" / "datasets--someone--two-cams" / "snapshots" / COMMIT, local)
    res = worldmot(hf_home, "viz", "dataset", "someone/two-cams", "--episodes", "1", "--out", "y.rrd", cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]


def test_only_the_cameras_in_use_are_fetched():
    info = {"video_path": "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4",
            "features": {"observation.images.top": {"dtype": "video"}, "observation.images.wrist": {"dtype": "video"},
                         "action": {"dtype": "float32"}}}
    assert _video_patterns(info, ["observation.images.wrist"]) == ["videos/observation.images.wrist/chunk-*/file-*.mp4"]
    assert len(_video_patterns(info, [])) == 2
    v21 = {**info, "video_path": "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"}
    assert _video_patterns(v21, ["observation.images.top"]) == ["videos/chunk-*/observation.images.top/episode_*.mp4"]


@pytest.mark.parametrize("name,repo,revision", [("lerobot/pusht", "lerobot/pusht", None),
                                                ("lerobot/pusht@v3.0", "lerobot/pusht", "v3.0"),
                                                ("a.b/c-d_e@refs/pr/1", "a.b/c-d_e", "refs/pr/1")])
def test_hub_ids(name, repo, revision):
    m = HUB_ID.match(name)
    assert m and m["repo"] == repo and m["revision"] == revision


@pytest.mark.parametrize("name", ["/abs/path", "data", "a/b/c", "./x/y", "a/"])
def test_paths_are_not_hub_ids(name):
    assert HUB_ID.match(name) is None
