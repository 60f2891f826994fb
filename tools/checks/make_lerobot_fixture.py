"""Write a tiny dataset with LeRobot's own writer (run in a venv that has lerobot)."""
import sys, shutil, numpy as np, torch
lib = torch.library.Library('torchvision','DEF')
lib.define('nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor')
lib.define('qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor')
from lerobot.datasets.lerobot_dataset import LeRobotDataset
root = sys.argv[1]
shutil.rmtree(root, ignore_errors=True)
features = {
    "observation.images.top": {"dtype": "video", "shape": (32, 48, 3), "names": ["height", "width", "channels"]},
    "observation.images.wrist": {"dtype": "video", "shape": (24, 32, 3), "names": ["height", "width", "channels"]},
    "observation.state": {"dtype": "float32", "shape": (3,), "names": ["x", "y", "z"]},
    "observation.extra": {"dtype": "float32", "shape": (5,), "names": None},
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
            "observation.extra": np.arange(5, dtype=np.float32) * i,
            "action": np.array([i / 10, -i / 10], np.float32),
            "next.reward": np.array([i / (n - 1)], np.float32),
            "next.success": np.array([i == n - 1]),
            "task": f"task number {e % 2}",
        })
    ds.save_episode()
ds.finalize()
print("written", root)
