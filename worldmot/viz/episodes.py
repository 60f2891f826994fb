"""Episode recordings for evaluation and planning: what the robot saw, what the model imagined, what it chose.

    with EpisodeRecorder("out/eval.rrd", fps=20) as rec:
        for i, seed in enumerate(seeds):
            obs, info = env.reset(seed=seed)
            rec.start_episode(i, info["instruction"], goal_image=env.unwrapped.render_goal())
            for t in range(max_steps):
                action = planner.act(obs)
                rec.log_step(t, obs["pixels"]["top"], action, action_chosen=planner.plan[0],
                             imagined_frames=planner.imagined,        # (H, h, w, 3) of the chosen plan
                             candidate_costs=planner.costs,           # (iterations, N)
                             predicted_progress=planner.progress, reasoning=policy.reasoning)
                obs, reward, terminated, truncated, info = env.step(action)
                rec.log_step(...)  # or pass reward / success of step t with the next call, see log_step
            rec.end_episode(success=info["is_success"])

Each episode is a subtree ``episode_NNN/`` on the timeline ``step`` (and ``timestamp`` in seconds when
``fps`` is given); the blueprint has one tab per episode, so switching episodes is one click:

    episode_000/camera              the real frame at each step
    episode_000/goal                the goal image (static)
    episode_000/plan/imagined       at a step where a plan was made: its imagined frames side by side
    episode_000/plan/real           at the same step: the real frames that followed (filled in once they are
                                    known; black where the episode ended first)
    episode_000/action/executed     the executed action, one series per dimension
    episode_000/action/chosen       the planner's chosen action (e.g. before clipping or chunking)
    episode_000/planner/cost        best and mean candidate cost of the last iteration
    episode_000/planner/iterations  bar chart: the best cost of each iteration (is the planner converging?)
    episode_000/planner/candidates  bar chart: the last iteration's candidate costs, sorted
    episode_000/progress            the model's predicted progress
    episode_000/reward, success     the env's reward and success (0/1)
    episode_000/instruction         text log at step 0
    episode_000/reasoning           text log, whenever the text changes
    episode_000/outcome             "success" / "failure" at the episode's last step
    summary/success, return, length one row per episode on the timeline ``episode``

Cost: steps are buffered and sent as columns (see columns.py) every ``flush_rows`` rows or
``flush_seconds`` seconds, on ``flush()`` and on close. The layout (blueprint) is sent after the first
episode and, complete, on close. The file is readable at any time; ``close()`` (also run at interpreter
exit, on leaving the ``with`` block, and on SIGTERM when no other handler is set) writes the last rows, the
layout and the footer. A process killed outright (SIGKILL) loses the rows not flushed yet (at most
``flush_seconds`` of them).
"""
from __future__ import annotations

import atexit
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rerun as rr
import rerun.blueprint as rrb

from worldmot.errors import WorldmotError
from worldmot.viz.columns import ColumnBuffer, close_recording, new_recording
from worldmot.viz.images import ImagePolicy, encode_jpeg, strip, to_hwc_uint8, to_numpy
from worldmot.viz.paths import episode_path

APPLICATION_ID = "worldmot rollouts"
SUMMARY = "summary"


@dataclass
class _Episode:
    index: int
    root: str
    last_step: int | None = None
    success: bool = False
    success_seen: bool = False
    reward_sum: float = 0.0
    steps: int = 0
    reasoning: str | None = None
    named: set[str] = field(default_factory=set)  # scalar entities whose series names were logged
    plans: list[tuple[int, int, tuple[int, int]]] = field(default_factory=list)  # pending (step, H, (h, w))
    frames: dict[int, np.ndarray] = field(default_factory=dict)  # real frames the pending plans still need


class EpisodeRecorder:
    """Episodes of an evaluation or a planning run, in one .rrd file (see the module docstring).

    ``images``: raw frames or JPEG (default: JPEG above 128x128 pixels and once 256 MB of raw frames were
    logged). ``imagined_stride``: env steps between consecutive imagined frames (the action chunk length).
    """

    def __init__(self, path: str | Path, application_id: str = APPLICATION_ID, name: str | None = None,
                 fps: float | None = None, images: ImagePolicy | None = None, imagined_stride: int = 1,
                 flush_rows: int = 256, flush_seconds: float = 2.0, handle_sigterm: bool = True):
        self.path = Path(path)
        if self.path.is_dir():
            raise WorldmotError(f"{self.path}: is a folder (expected a .rrd file path)")
        if imagined_stride < 1:
            raise WorldmotError(f"imagined_stride={imagined_stride} (expected >= 1)")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fps = fps
        self.imagined_stride = int(imagined_stride)
        self.flush_rows, self.flush_seconds = flush_rows, flush_seconds
        self.images = images or ImagePolicy()
        self.rec = new_recording(application_id, name=name or self.path.stem)
        self.rec.save(self.path)
        timelines = {"step": "sequence", "episode": "sequence"}
        if fps:
            timelines["timestamp"] = "duration"
        self.buf = ColumnBuffer(self.rec, timelines, self.images)
        self.episodes: list[int] = []
        self._kinds: set[str] = set()  # kinds of data seen so far (the blueprint shows their views)
        self._blueprint_state: tuple[frozenset[str], int] = (frozenset(), -1)
        self._ep: _Episode | None = None
        self._finished: list[str] = []  # subtrees of ended episodes, forgotten at the next flush
        self._last_flush = time.monotonic()
        self._closed = False
        self._holds_sigterm = handle_sigterm and _SIGTERM.hold()
        atexit.register(self.close)

    # ------------------------------------------------------------------ episodes
    def start_episode(self, index: int, instruction: str, goal_image: Any = None) -> None:
        """Start episode ``index`` (ends the open one). ``goal_image``: (H, W, 3) uint8 or (3, H, W) float."""
        self._check_open()
        if self._ep is not None:
            self.end_episode()
        index = int(index)
        if index in self.episodes:
            raise WorldmotError(f"{self.path}: episode {index} was already recorded")
        self._ep = ep = _Episode(index, episode_path(index))
        self.episodes.append(index)
        self.buf.text(f"{ep.root}/instruction", self._times(0), str(instruction))
        if goal_image is not None:
            goal = to_hwc_uint8(goal_image, what="goal_image")
            self.rec.log(f"{ep.root}/goal", self._image(goal), static=True)
            self._kinds.add("goal")

    def log_step(self, step: int, real_frame: Any, action_executed: Any, action_chosen: Any = None,
                 imagined_frames: Any = None, candidate_costs: Any = None, predicted_progress: Any = None,
                 reasoning: str | None = None, success: bool | None = None, reward: float | None = None) -> None:
        """One step of the open episode.

        step: the env step (timeline ``step``); real_frame: the observation at this step, (H, W, 3) uint8 or
        (3, H, W) float in [-1, 1]; action_executed: (A,) (or a chunk, flattened); action_chosen: (A,), what
        the planner chose; imagined_frames: (H, h, w, 3) uint8 (or (H, 3, h, w) float), the chosen plan's
        frames for steps step + k * imagined_stride, k = 1..H; candidate_costs: (iterations, N) or (N,),
        lower is better; predicted_progress: float (or (P,)); reasoning: text (logged when it changes);
        success, reward: the env's outcome of this step's action.
        """
        ep = self._open_episode()
        step = int(step)
        t = self._times(step)
        root = ep.root
        frame = to_hwc_uint8(real_frame, what="real_frame").copy()  # the caller may reuse its buffer
        self.buf.image(f"{root}/camera", t, frame)
        self._series(ep, "action/executed", t, action_executed, "executed")
        if action_chosen is not None:
            self._series(ep, "action/chosen", t, action_chosen, "chosen")
        if predicted_progress is not None:
            self._series(ep, "progress", t, predicted_progress, "progress")
        if reward is not None:
            self._series(ep, "reward", t, float(reward), "reward")
            ep.reward_sum += float(reward)
        if success is not None:
            self._series(ep, "success", t, float(bool(success)), "success")
            ep.success, ep.success_seen = ep.success or bool(success), True
        if reasoning is not None and reasoning != ep.reasoning:
            ep.reasoning = reasoning
            if reasoning:
                self.buf.text(f"{root}/reasoning", t, reasoning)
                self._kinds.add("reasoning")
        if candidate_costs is not None:
            self._costs(ep, t, candidate_costs)
        if ep.plans or imagined_frames is not None:
            ep.frames[step] = frame  # a real frame that a plan's comparison strip will need
        if imagined_frames is not None:
            imagined = to_hwc_uint8(imagined_frames, what="imagined_frames")
            if imagined.ndim != 4:
                raise WorldmotError(f"imagined_frames: shape {list(imagined.shape)} (expected (H, h, w, 3))")
            hw = imagined.shape[1:3]
            self.buf.image(f"{root}/plan/imagined", t, strip(list(imagined), hw))
            ep.plans.append((step, len(imagined), hw))
            self._kinds.add("plan")
        self._complete_plans(ep, step, final=False)
        ep.last_step = step if ep.last_step is None else max(ep.last_step, step)
        ep.steps += 1
        if self.buf.pending >= self.flush_rows or time.monotonic() - self._last_flush > self.flush_seconds:
            self._flush()

    def end_episode(self, success: bool | None = None) -> None:
        """End the open episode: the outcome text and the summary row. ``success`` defaults to whether any
        step reported success."""
        ep = self._open_episode()
        if success is None:
            success = ep.success if ep.success_seen else None
        last = ep.last_step if ep.last_step is not None else 0
        self._complete_plans(ep, last, final=True)
        if success is not None:
            self.buf.text(f"{ep.root}/outcome", self._times(last), "success" if success else "failure",
                          level="INFO" if success else "WARN")
            self.buf.scalars(f"{SUMMARY}/success", {"episode": ep.index}, [float(bool(success))])
        self.buf.scalars(f"{SUMMARY}/return", {"episode": ep.index}, [ep.reward_sum])
        self.buf.scalars(f"{SUMMARY}/length", {"episode": ep.index}, [ep.steps])
        self._finished.append(ep.root)
        self._ep = None
        self._send_blueprint()  # after the first episode (the kinds of data are known), and when they change

    def flush(self) -> None:
        """Send the buffered rows and wait until they are written: a kill after this loses nothing before it."""
        self._check_open()
        self._flush()
        self.rec.flush()

    def close(self) -> None:
        """End the open episode and write the file's footer. Safe to call twice."""
        if self._closed:
            return
        try:
            if self._ep is not None:
                self.end_episode()
            self._flush()
            if self.episodes:
                self._send_blueprint(force=True)
        finally:
            self._closed = True
            close_recording(self.rec)
            atexit.unregister(self.close)
            if self._holds_sigterm:
                _SIGTERM.release()

    def __enter__(self) -> "EpisodeRecorder":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ helpers
    def _check_open(self) -> None:
        if self._closed:
            raise WorldmotError(f"{self.path}: recorder already closed")

    def _open_episode(self) -> _Episode:
        self._check_open()
        if self._ep is None:
            raise WorldmotError(f"{self.path}: no open episode (call start_episode first)")
        return self._ep

    def _times(self, step: int) -> dict[str, float]:
        t: dict[str, float] = {"step": step}
        if self.fps:
            t["timestamp"] = step / self.fps
        return t

    def _image(self, frame: np.ndarray):
        if self.images.use_jpeg(frame.shape[0], frame.shape[1]):
            return rr.EncodedImage(contents=encode_jpeg(frame, self.images.jpeg_quality), media_type="image/jpeg")
        return rr.Image(frame)

    def _series(self, ep: _Episode, name: str, t: dict, values: Any, label: str) -> None:
        v = to_numpy(values).astype(np.float64).reshape(-1)
        entity = f"{ep.root}/{name}"
        if entity not in ep.named:
            names = [label] if len(v) == 1 else [f"{label}[{i}]" for i in range(len(v))]
            self.rec.log(entity, rr.SeriesLines(names=names), static=True)
            ep.named.add(entity)
            self._kinds.add(name.split("/")[0])
        self.buf.scalars(entity, t, v)

    def _costs(self, ep: _Episode, t: dict, costs: Any) -> None:
        c = to_numpy(costs).astype(np.float64)
        if c.ndim == 1:
            c = c[None]
        if c.ndim != 2 or c.shape[1] == 0:
            raise WorldmotError(f"candidate_costs: shape {list(c.shape)} (expected (iterations, N) or (N,))")
        last = c[-1]
        self._series(ep, "planner/cost", t, [np.nanmin(last), np.nanmean(last)], "cost")
        self.buf.bar(f"{ep.root}/planner/iterations", t, np.nanmin(c, axis=1))
        self.buf.bar(f"{ep.root}/planner/candidates", t, np.sort(last))

    def _complete_plans(self, ep: _Episode, step: int, final: bool) -> None:
        """Log the real strip of every plan whose frames have all arrived (or all plans, at the end)."""
        keep = []
        for start, h, hw in ep.plans:
            needed = [start + k * self.imagined_stride for k in range(1, h + 1)]
            if final or step >= needed[-1]:
                real = strip([ep.frames.get(s) for s in needed], hw)
                self.buf.image(f"{ep.root}/plan/real", self._times(start), real)
            else:
                keep.append((start, h, hw))
        ep.plans = keep
        oldest = min((s for s, _, _ in keep), default=step)
        for s in [s for s in ep.frames if s <= oldest]:
            del ep.frames[s]

    def _flush(self) -> None:
        self.buf.flush()
        for root in self._finished:
            self.buf.forget(root)
        self._finished.clear()
        self._last_flush = time.monotonic()

    def _send_blueprint(self, force: bool = False) -> None:
        """Each send is a new blueprint in the file (the last one wins; about 50 kB and 2 ms per episode tab),
        so send only when the kinds of data change, and (force) with every episode on close."""
        kinds = frozenset(self._kinds)
        state = (kinds, len(self.episodes))
        if state == self._blueprint_state or (not force and kinds == self._blueprint_state[0]):
            return
        self._blueprint_state = state
        self.rec.send_blueprint(episodes_blueprint(self.episodes, kinds), make_active=True, make_default=True)


def episodes_blueprint(episodes: list[int], kinds: frozenset[str] | set[str]) -> rrb.Blueprint:
    """One tab per episode (the latest active) and a summary tab; views only for the kinds of data logged
    (goal, plan, action, planner, progress, reward, success, reasoning)."""
    tabs = []
    for index in episodes:
        root = episode_path(index)
        top = [rrb.Spatial2DView(origin=f"{root}/camera", name="real")]
        if "goal" in kinds:
            top.append(rrb.Spatial2DView(origin=f"{root}/goal", name="goal"))
        if "plan" in kinds:
            top.append(rrb.Vertical(rrb.Spatial2DView(origin=f"{root}/plan/imagined", name="imagined (chosen plan)"),
                                    rrb.Spatial2DView(origin=f"{root}/plan/real", name="real (what followed)")))
        plots = [rrb.TimeSeriesView(origin=f"{root}/action", name="action: executed vs chosen")]
        outcome = [f"{root}/{k}" for k in ("progress", "reward", "success") if k in kinds]
        if outcome:
            plots.append(rrb.TimeSeriesView(origin=root, contents=outcome, name="progress, reward, success"))
        if "planner" in kinds:
            plots.append(rrb.TimeSeriesView(origin=f"{root}/planner/cost", name="planner cost"))
            plots.append(rrb.BarChartView(origin=f"{root}/planner/iterations", name="best cost per iteration"))
            plots.append(rrb.BarChartView(origin=f"{root}/planner/candidates", name="candidate costs"))
        texts = [f"{root}/{e}" for e in ("instruction", "reasoning", "outcome")]
        plots.append(rrb.TextLogView(origin=root, contents=texts, name="text"))
        tabs.append(rrb.Vertical(rrb.Horizontal(*top), rrb.Grid(*plots) if len(plots) > 3 else rrb.Horizontal(*plots),
                                 row_shares=[3, 2], name=f"episode {index}"))
    tabs.append(rrb.TimeSeriesView(origin=SUMMARY, name="summary (timeline: episode)"))
    return rrb.Blueprint(rrb.Tabs(*tabs, active_tab=max(len(tabs) - 2, 0)), collapse_panels=False)


def _exit_on_sigterm(signum, frame) -> None:
    """SIGTERM ends the process like Ctrl-C does: ``with`` blocks and atexit hooks run (the file gets its footer)."""
    raise SystemExit(128 + signum)


class _SigtermHandler:
    """While recorders are open, SIGTERM raises SystemExit(143) instead of killing the process on the spot,
    if nobody else handles SIGTERM (only the main thread can install handlers)."""

    def __init__(self):
        self.users = 0
        self.installed = False

    def hold(self) -> bool:
        if threading.current_thread() is not threading.main_thread():
            return False
        if self.users == 0 and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _exit_on_sigterm)
            self.installed = True
        self.users += 1
        return True

    def release(self) -> None:
        self.users -= 1
        if self.users == 0 and self.installed and threading.current_thread() is threading.main_thread():
            if signal.getsignal(signal.SIGTERM) is _exit_on_sigterm:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
            self.installed = False


_SIGTERM = _SigtermHandler()
