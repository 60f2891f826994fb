"""What ``worldmot eval`` leaves in its output folder: eval_info.json, videos, eval.rrd.

Every file is written under a temporary name and renamed into place, so an interrupted evaluation
leaves no half-written file behind.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from worldmot.datasets.video import encode_segment
from worldmot.evaluation.simulator import EvalResult, write_json_atomic
from worldmot.io import atomic_write
from worldmot.stepping import Episode

VIDEO_SIZE = 256


def overlay(frame: np.ndarray, instruction: str, step: int, action: np.ndarray | None, success: bool) -> np.ndarray:
    """(H, W, 3) uint8 -> (VIDEO_SIZE, VIDEO_SIZE, 3) with the instruction, step, action and success drawn."""
    img = cv2.resize(frame, (VIDEO_SIZE, VIDEO_SIZE), interpolation=cv2.INTER_NEAREST)
    bottom = f"t={step}" + ("" if action is None else "  a=" + " ".join(f"{v:+.2f}" for v in np.ravel(action)[:4]))
    _text(img, instruction[:42], (4, 14), (255, 255, 255))
    _text(img, bottom, (4, VIDEO_SIZE - 8), (255, 255, 255))
    if success:
        _text(img, "success", (VIDEO_SIZE - 66, VIDEO_SIZE - 8), (80, 255, 80))
    return img


def _text(img: np.ndarray, text: str, at: tuple[int, int], colour: tuple[int, int, int]) -> None:
    """Text with a dark outline, readable on the light table and on dark objects alike."""
    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.putText(img, text, at, font, 0.4, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(img, text, at, font, 0.4, colour, 1, cv2.LINE_AA)


def episode_video(ep: Episode, fps: int) -> bytes:
    frames = [overlay(f, ep.instruction, t, ep.actions[t], bool(ep.successes[:t].any())) for t, f in enumerate(ep.frames)]
    frames.append(overlay(ep.final_frame, ep.instruction, len(ep), None, ep.success))
    return encode_segment(np.stack(frames), fps)


def write_videos(out: Path, episodes: list[Episode], count: int, fps: int) -> list[str]:
    (out / "videos").mkdir(parents=True, exist_ok=True)
    paths = []
    for i, ep in enumerate(episodes[:count]):
        path = out / "videos" / f"eval_episode_{i}.mp4"
        atomic_write(path, lambda tmp, ep=ep: tmp.write_bytes(episode_video(ep, fps)))
        paths.append(str(path.relative_to(out)))
    return paths


def write_rrd(path: Path, episodes: list[Episode], fps: int | None = None, imagined_stride: int = 1) -> None:
    """The evaluation as a Rerun recording: per episode the camera, actions, reward, success, reasoning and,
    for a planner, at every replanning step the imagined frames of the chosen plan (beside the real frames
    that followed), every iteration's candidate costs, the predicted progress and the chosen actions."""
    from worldmot.viz.episodes import EpisodeRecorder

    atomic_write(path, lambda tmp: _record_episodes(
        EpisodeRecorder(tmp, name=path.stem, fps=fps, imagined_stride=imagined_stride), episodes))


def _record_episodes(recorder, episodes: list[Episode]) -> None:
    with recorder as rec:
        for i, ep in enumerate(episodes):
            rec.start_episode(i, ep.instruction, goal_image=ep.goal_frame)
            plans, plan, since = ep.extra.get("plans", {}), None, 0
            for t in range(len(ep)):
                extra = {}
                if t in plans:
                    plan, since = plans[t], t
                    extra = dict(imagined_frames=plan["imagined"], candidate_costs=plan["costs"],
                                 predicted_progress=plan["step_scores"])
                if plan is not None and t - since < len(plan["chosen"]):
                    extra["action_chosen"] = plan["chosen"][t - since]
                rec.log_step(t, ep.frames[t], ep.actions[t], reasoning=ep.subtasks[t],
                             success=bool(ep.successes[t]), reward=float(ep.rewards[t]), **extra)
            rec.end_episode(ep.success)


def write_eval_outputs(out: Path, result: EvalResult, videos: int = 2, rrd: bool = True, fps: int = 10,
                       extra: dict | None = None, imagined_stride: int = 1) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    info = result.info()
    info["video_paths"] = write_videos(out, result.episodes, videos, fps) if videos else []
    if rrd:
        write_rrd(out / "eval.rrd", result.episodes, fps=fps, imagined_stride=imagined_stride)
    info.update(extra or {})
    write_json_atomic(out / "eval_info.json", info)
    return info
