"""The demo's stages: record, train, evaluate four policies, report, in one cached run folder.

    OUT/data/                    LeRobot v3.0 dataset recorded by the scripted expert (with exploration noise)
    OUT/run/                     the training run (checkpoints, metrics.jsonl, curves.png, model/)
    OUT/eval/<policy>/           eval_info.json, videos/, eval.rrd per policy (random, scripted, model, planner)
    OUT/report.md                success table, planning latency, prediction PSNR, plots
    OUT/success.png, curves.png
    OUT/demo.rrd                 the planner's episodes: real vs imagined frames, candidate costs, progress

Each stage is skipped when its output is complete (a dataset with all episodes, a run that reached its last
step, an eval_info.json) and resumed when it is partial (recording and training both resume), so an
interrupted demo continues where it stopped. ``fresh=True`` deletes what the demo wrote in OUT first. OUT must
be new, empty or a demo folder (only the names above): the demo never writes into, nor deletes, anything else.
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from worldmot.demo.config import POLICIES, DemoConfig, plan_settings, train_settings
from worldmot.demo.report import write_report
from worldmot.errors import WorldmotError
from worldmot.io import atomic_write, is_temporary, remove_temporaries

# every name the demo writes in OUT
DEMO_ENTRIES = ("data", "run", "eval", "report.md", "success.png", "curves.png", "demo.rrd", "stages.json")


class StageClock:
    """Seconds spent in each stage, summed over the invocations that ran it to its end (OUT/stages.json);
    the part of a stage before an interruption is not counted."""

    def __init__(self, out: Path):
        self.path = out / "stages.json"
        self.seconds: dict[str, float] = json.loads(self.path.read_text()) if self.path.exists() else {}

    def add(self, stage: str, seconds: float) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds
        atomic_write(self.path, lambda tmp: tmp.write_text(json.dumps(self.seconds, indent=2)))


def _say(msg: str) -> None:
    print(msg, flush=True)


def _stage(n: int, name: str, skip: bool) -> None:
    _say(f"[{n}/4] {name}" + ("  (done, skipped)" if skip else ""))


def record_stage(cfg: DemoConfig, out: Path) -> Path:
    from worldmot.recording import record

    data = out / "data"
    info = data / "meta" / "info.json"
    done = info.exists() and json.loads(info.read_text()).get("total_episodes", 0) >= cfg.episodes
    _stage(1, f"record {cfg.episodes} episodes of {cfg.env} with the scripted expert -> {data}", done)
    if not done:
        record(cfg.env, "scripted", cfg.episodes, data, num_envs=cfg.num_envs, resume=data.exists(),
               policy_kwargs={"action_noise": cfg.action_noise, "noise_duty": cfg.noise_duty} if cfg.action_noise else None,
               spec_overrides=cfg.env_overrides)
    return data


def train_stage(cfg: DemoConfig, out: Path) -> Path:
    from worldmot.checkpoint import exported_step
    from worldmot.training import checkpoints as ckpt
    from worldmot.training.loop import train

    run = out / "run"
    tcfg = train_settings(cfg, out)
    latest = ckpt.latest_checkpoint(run) if run.exists() else None
    step = ckpt.load_checkpoint(latest)["step"] if latest is not None else -1
    done = step >= tcfg.steps and exported_step(run / "model") == step  # a kill can fall between the two
    _stage(2, f"train the MoT world model ({tcfg.model.name}, {tcfg.steps} steps) -> {run}", done)
    if not done:
        if latest is None and run.exists():
            shutil.rmtree(run)  # the demo's own run, killed before its first checkpoint: nothing to resume
        train(tcfg, resume=latest is not None)
    return run


def eval_stage(cfg: DemoConfig, out: Path, run: Path) -> dict[str, dict]:
    from worldmot.checkpoint import load_model
    from worldmot.evaluation.run import evaluate, summary_line

    model = None
    plan = plan_settings(cfg)
    infos = {}
    for policy in POLICIES:
        folder = out / "eval" / policy
        path = folder / "eval_info.json"
        episodes = cfg.planner_episodes if policy == "planner" else cfg.eval_episodes
        if path.exists():
            infos[policy] = json.loads(path.read_text())
            _say(f"      {policy}: done, skipped")
            continue
        if policy in ("model", "planner") and model is None:
            model = load_model(run)
        infos[policy] = evaluate(cfg.env, policy, folder, model=model if policy in ("model", "planner") else None,
                                 plan=plan if policy == "planner" else None, episodes=episodes,
                                 seed=cfg.eval_seed, num_envs=cfg.eval_envs, videos=2,
                                 extra={"checkpoint": str(run) if policy in ("model", "planner") else None},
                                 spec_overrides=cfg.env_overrides)
        _say(f"      {summary_line(infos[policy])}")
    return infos


def run_demo(cfg: DemoConfig, out: Path, fresh: bool = False) -> Path:
    """The whole demo; returns the report's path."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise WorldmotError(f"--out {out}: is a file (expected the demo's folder)")
    _check_env(cfg)
    plan_settings(cfg)  # before anything is written
    train_settings(cfg, out).check()
    _check_demo_folder(out)
    if fresh:
        _remove_demo_outputs(out)
    out.mkdir(parents=True, exist_ok=True)
    _remove_own_temporaries(out)
    clock = StageClock(out)
    t = time.perf_counter()
    record_stage(cfg, out)
    clock.add("record", time.perf_counter() - t)
    t = time.perf_counter()
    run = train_stage(cfg, out)
    clock.add("train", time.perf_counter() - t)
    _stage(3, f"evaluate {', '.join(POLICIES)} in the simulator -> {out / 'eval'}", False)
    t = time.perf_counter()
    infos = eval_stage(cfg, out, run)
    clock.add("evaluate", time.perf_counter() - t)
    _stage(4, f"report -> {out / 'report.md'}", False)
    _copy_atomic(out / "eval" / "planner" / "eval.rrd", out / "demo.rrd")
    return write_report(out, cfg, run, infos, clock.seconds)


def _check_demo_folder(out: Path) -> None:
    """Refuse an OUT that holds anything the demo does not write (a user's folder)."""
    foreign = sorted(p.name for p in out.iterdir() if p.name not in DEMO_ENTRIES and not is_temporary(p)) \
        if out.is_dir() else []
    if foreign:
        raise WorldmotError(f"--out {out}: holds {foreign[0]!r}, which the demo did not write (expected a new "
                            "folder or a demo folder)")


def _remove_demo_outputs(out: Path) -> None:
    for name in DEMO_ENTRIES:
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def _remove_own_temporaries(out: Path) -> None:
    """What a killed demo left half-written in its evaluations and its top-level files (the dataset and the
    run clean theirs when they resume)."""
    remove_temporaries(out / "eval")
    for path in out.glob(".*"):
        if is_temporary(path) and path.is_file():
            path.unlink()


def _check_env(cfg: DemoConfig) -> None:
    """The env resolves, fits its spec and has the scripted expert the demo records with; one line otherwise."""
    from worldmot.envs.experts import expert_of
    from worldmot.envs.make import make_env

    env = make_env(cfg.env, spec_overrides=cfg.env_overrides)
    try:
        if expert_of(env) is None:
            raise WorldmotError(f"--env {cfg.env}: has no scripted expert for the demo to record with (record with "
                                "worldmot record --policy random, then worldmot train and eval)")
    finally:
        env.close()


def _copy_atomic(src: Path, dst: Path) -> None:
    if not src.exists():
        return
    atomic_write(dst, lambda tmp: shutil.copyfile(src, tmp))
