"""Check that LeRobot's own LeRobotDataset loads datasets written by worldmot.

    python tools/checks/check_lerobot_interop.py [--venv /tmp/lerobot-venv] [--skip-install]

1. Sets up a SEPARATE venv with lerobot 0.4.4 (the newest release for Python 3.11) without touching the
   project's: lerobot pins torch<2.11, which on PyPI is a multi-GB CUDA build, so the venv takes the local
   CPU torch 2.13.0 and installs lerobot and the few packages LeRobotDataset needs with --no-deps:
   torchvision 0.28.0 (for its transforms; its C ops are built for CUDA torch, so the check declares the two
   operator schemas torchvision's import registers fakes for), and torchcodec 0.13.0, LeRobot's video
   decoder, which needs the system FFmpeg libraries (Debian: apt-get install libavcodec-dev libavformat-dev
   libavutil-dev libswscale-dev libswresample-dev libavdevice-dev libavfilter-dev).
2. Writes small datasets with worldmot (two cameras, subtasks, episodes of different lengths, several
   files; one AV1, one H.264, and one H.264 killed during its fourth episode's save, with stats.json ahead of
   info.json, and resumed) and the values worldmot's reader returns for them.
3. In the LeRobot venv: LeRobotDataset(repo_id="local/x", root=DIR), every item of every episode, with and
   without delta_timestamps, compared with worldmot's values (frames within codec tolerance).
Exit status 0 when every check passes.
"""
from __future__ import annotations

import argparse
import ctypes.util
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
LEROBOT = "lerobot==0.4.4"
DEPS = ["datasets>=4,<5", "huggingface-hub[hf-transfer]>=0.34.2,<0.36", "jsonlines", "packaging>=24.2,<26",
        "draccus==0.10.0", "deepdiff>=7,<9", "termcolor", "einops", "av>=15,<16", "opencv-python-headless>=4.9,<4.13",
        "gymnasium>=1.1.1,<2", "imageio[ffmpeg]", "pandas", "pyarrow", "setuptools<81", "accelerate>=1.10,<2"]
NO_DEPS = [LEROBOT, "torchvision==0.28.0", "torchcodec==0.13.0"]

CHECK = r'''
import json, sys
import numpy as np
import torch
# torchvision 0.28 from PyPI cannot load its CUDA-built C ops beside a CPU torch; its import only needs
# these two schemas to exist. LeRobotDataset uses torchvision for transforms only.
_lib = torch.library.Library("torchvision", "DEF")
_lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
_lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
from lerobot.datasets.lerobot_dataset import LeRobotDataset

root, expected_path = sys.argv[1], sys.argv[2]
exp = np.load(expected_path, allow_pickle=True)
ds = LeRobotDataset("local/x", root=root)
n = len(ds)
assert n == int(exp["n"]), (n, int(exp["n"]))
cams = list(exp["cams"])
worst = 0
for i in range(n):
    item = ds[i]
    assert int(item["index"]) == i
    np.testing.assert_array_equal(item["observation.state"].numpy(), exp["state"][i])
    np.testing.assert_array_equal(item["action"].numpy(), exp["action"][i])
    assert item["task"] == exp["task"][i], (item["task"], exp["task"][i])
    assert item["subtask"] == exp["subtask"][i], (item["subtask"], exp["subtask"][i])
    for c, cam in enumerate(cams):
        got = (item[cam].numpy() * 255).round().transpose(1, 2, 0)
        worst = max(worst, float(np.abs(got - exp[f"frames{c}"][i]).max()))
assert worst <= 6, f"frames differ from worldmot's decode by up to {worst}"
fps = ds.fps
dts = {cams[0]: [-1 / fps, 0.0, 2 / fps], "action": [0.0, 1 / fps, 2 / fps, 3 / fps]}
dd = LeRobotDataset("local/x", root=root, delta_timestamps=dts)
for i in (0, n // 2, n - 1):
    item = dd[i]
    assert item[cams[0]].shape[0] == 3 and item["action"].shape[0] == 4
ep_end = int(exp["first_len"]) - 1
item = dd[ep_end]
assert item[cams[0] + "_is_pad"].tolist() == [False, False, True], item[cams[0] + "_is_pad"]
assert item["action_is_pad"].tolist() == [False, True, True, True]
assert dd[0][cams[0] + "_is_pad"].tolist() == [True, False, False]
print(json.dumps({"frames": n, "episodes": ds.num_episodes, "max_frame_abs_diff": worst, "ok": True}))
'''


def sh(cmd: list[str]) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def install(venv: Path) -> Path:
    py = venv / "bin" / "python"
    if not py.exists():
        sh([sys.executable, "-m", "venv", str(venv)])
    pip = [str(py), "-m", "pip", "install", "-q"]
    sh(pip + ["torch==2.13.0"])  # the local CPU build (pip's find-links); never a CUDA build
    sh(pip + DEPS)
    sh(pip + ["--no-deps"] + NO_DEPS)
    return py


LENGTHS = [6, 11, 3, 8, 5]


def write_datasets(out: Path) -> list[tuple[Path, Path]]:
    """(dataset folder, expected values .npz) of each dataset the check loads with LeRobot."""
    made = []
    for name, codec, killed in (("libsvtav1", "libsvtav1", False), ("libx264", "libx264", False),
                                ("libx264-killed-resumed", "libx264", True)):
        root = out / name
        if killed:
            _write_killed(root, codec)
        _write(root, codec, resume=killed)
        np.savez(out / f"{name}.npz", **_expected(root))
        made.append((root, out / f"{name}.npz"))
    return made


def _write(root: Path, codec: str, resume: bool = False) -> None:
    """The episodes of LENGTHS the dataset does not hold yet (the recorder's contract)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from worldmot.datasets.writer import LeRobotWriter

    from datasets_helpers import features, frame  # noqa: E402

    feats = features(cams=("top", "wrist"), size=(32, 48))
    with LeRobotWriter(root, 10, feats, codec=codec, episodes_per_file=2, resume=resume) as w:
        for ep in range(w.info["total_episodes"], len(LENGTHS)):
            n = LENGTHS[ep]
            for i in range(n):
                w.add_frame(frame(feats, ep, i, n), task=f"task {ep % 3}", subtask=f"sub {i // 4}")
            w.save_episode()


def _write_killed(root: Path, codec: str) -> None:
    """A recording killed (by fault injection) after its fourth episode's stats.json, before its info.json."""
    import worldmot.io as wio

    seen = []

    def kill(point: str) -> None:
        seen.append(point)
        if seen.count("stats.json:renamed") == 4:
            raise wio.Killed(point)

    wio.FAULT_HOOK = kill
    try:
        _write(root, codec)
        raise RuntimeError(f"{root}: the recording ended before its kill point")
    except wio.Killed:
        pass
    finally:
        wio.FAULT_HOOK = None


def _expected(root: Path) -> dict:
    from worldmot.datasets.reader import LeRobotDatasetReader

    r = LeRobotDatasetReader(root)
    rows = [r.episode_table(e) for e in range(r.num_episodes)]
    cat = {k: np.concatenate([t[k] for t in rows]) for k in rows[0]}
    exp = {"n": r.num_frames, "cams": np.array(r.video_keys), "first_len": LENGTHS[0],
           "state": cat["observation.state"], "action": cat["action"],
           "task": np.array([r.tasks[t] for t in cat["task_index"]]),
           "subtask": np.array([r.subtasks[s] for s in cat["subtask_index"]])}
    for c, cam in enumerate(r.video_keys):
        exp[f"frames{c}"] = np.concatenate([r.episode_frames(e, cam) for e in range(r.num_episodes)])
    return exp


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--venv", default="/tmp/lerobot-venv")
    p.add_argument("--skip-install", action="store_true", help="use the venv as it is")
    p.add_argument("--out", help="where to write the datasets (default: a temporary folder)")
    args = p.parse_args()
    if not ctypes.util.find_library("avcodec"):
        print("FFmpeg libraries not found (torchcodec needs them): apt-get install libavcodec-dev libavformat-dev "
              "libavutil-dev libswscale-dev libswresample-dev libavdevice-dev libavfilter-dev", file=sys.stderr)
        return 2
    venv = Path(args.venv)
    py = venv / "bin" / "python" if args.skip_install else install(venv)
    out = Path(args.out or tempfile.mkdtemp(prefix="worldmot-interop-"))
    out.mkdir(parents=True, exist_ok=True)
    failures = 0
    made = write_datasets(out)
    for root, expected in made:
        # cwd outside the repository: `python -c` puts the cwd on sys.path, and the repository's datasets/
        # folder would shadow Hugging Face's datasets package
        res = subprocess.run([str(py), "-c", CHECK, str(root), str(expected)], capture_output=True, text=True,
                             cwd=out)
        last = res.stdout.strip().splitlines()[-1] if res.stdout.strip() else ""
        if res.returncode == 0:
            print(f"{root.name}: LeRobotDataset OK {last}")
        else:
            failures += 1
            print(f"{root.name}: FAILED\n{res.stderr[-3000:]}")
    print(json.dumps({"passed": len(made) - failures, "failed": failures}))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
