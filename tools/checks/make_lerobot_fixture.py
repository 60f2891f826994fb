"""Write tests/fixtures/lerobot_v30_tiny with LeRobot's own writer: three episodes (5, 9 and 3 frames), two
cameras of different sizes (AV1), a named state, an unnamed environment state (privileged: where the objects are),
reward and success, two tasks, no keypoints.

Run in a venv that has lerobot (the one tools/checks/check_lerobot_interop.py sets up), not the project's:

    /tmp/lerobot-venv/bin/python tools/checks/make_lerobot_fixture.py tests/fixtures/lerobot_v30_tiny
"""
import argparse
import shutil

import numpy as np
import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("root", help="the dataset folder to write (replaced if it exists)")
    root = parser.parse_args().root
    # torchvision from PyPI cannot load its CUDA-built C ops beside a CPU torch; its import only needs these
    # two schemas to exist (LeRobotDataset uses torchvision for transforms only)
    lib = torch.library.Library("torchvision", "DEF")
    lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    shutil.rmtree(root, ignore_errors=True)
    features = {
        "observation.images.top": {"dtype": "video", "shape": (32, 48, 3), "names": ["height", "width", "channels"]},
        "observation.images.wrist": {"dtype": "video", "shape": (24, 32, 3), "names": ["height", "width", "channels"]},
        "observation.state": {"dtype": "float32", "shape": (3,), "names": ["x", "y", "z"]},
        "observation.environment_state": {"dtype": "float32", "shape": (5,), "names": None},
        "action": {"dtype": "float32", "shape": (2,), "names": ["dx", "dy"]},
        "next.reward": {"dtype": "float32", "shape": (1,), "names": None},
        "next.success": {"dtype": "bool", "shape": (1,), "names": None},
    }
    ds = LeRobotDataset.create("local/fixture", fps=10, features=features, root=root, robot_type="fixturebot", use_videos=True)
    for e, n in enumerate([5, 9, 3]):
        for i in range(n):
            v = 20 * e + 10 * i
            ds.add_frame({
                "observation.images.top": np.full((32, 48, 3), (v, 255 - v, 100), np.uint8),
                "observation.images.wrist": np.full((24, 32, 3), (50, v, 200), np.uint8),
                "observation.state": np.array([e, i, e + i], np.float32),
                "observation.environment_state": np.arange(5, dtype=np.float32) * i + e,
                "action": np.array([i / 10, -i / 10], np.float32),
                "next.reward": np.array([i / (n - 1)], np.float32),
                "next.success": np.array([i == n - 1]),
                "task": f"task number {e % 2}",
            })
        ds.save_episode()
    ds.finalize()
    print("written", root)


if __name__ == "__main__":
    main()
