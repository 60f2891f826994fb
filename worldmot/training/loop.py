"""``worldmot train``: the training loop (AdamW, warm-up + cosine, clipping, EMA, checkpoints, validation, DDP).

Repeatability: everything random in a step -- which windows, condition dropout, diffusion times and noise --
is drawn from generators seeded by (seed, step), for the GLOBAL batch, and each rank takes its rows. So a
resumed run (or a run on more processes) sees exactly what an uninterrupted single-process run sees.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Sampler
from tqdm import tqdm

from worldmot.checkpoint import exported_step, load_weights, save_model
from worldmot.datasets.finite import require_finite
from worldmot.config import from_yaml_text
from worldmot.datasets.hub import dataset_folder
from worldmot.datasets.reader import LeRobotDatasetReader
from worldmot.datasets.windows import WindowDataset, collate_windows, split_episodes
from worldmot.devices import wants_cuda
from worldmot.errors import WorldmotError
from worldmot.io import atomic_write, fault_point, is_temporary, remove_temporaries, restore_dir
from worldmot.model.world_model import WorldModel
from worldmot.sequence import pack_windows
from worldmot.tokenizers.actions import ActionTokenizer
from worldmot.training import checkpoints as ckpt
from worldmot.training.config import DataConfig, TrainConfig
from worldmot.training.ema import WarmupEMA
from worldmot.training.finite import FiniteLossCheck
from worldmot.training.losses import LOSS_PARTS, WorldModelLoss, sample_noise
from worldmot.training.metrics import state_read_r2, validate


# ----------------------------------------------------------------------------------------------------
# Processes
# ----------------------------------------------------------------------------------------------------

@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_processes(cfg: TrainConfig) -> Dist:
    """torchrun sets RANK/WORLD_SIZE: gloo on the CPU, NCCL on GPUs. One process otherwise."""
    want_cuda = wants_cuda(cfg.device, "device=")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if want_cuda else "gloo")
    if want_cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    else:
        device = torch.device("cpu")
        threads = cfg.threads or max(1, (os.cpu_count() or 1) // world)
        torch.set_num_threads(threads)
    if cfg.batch_size % world:
        raise WorldmotError(f"batch_size={cfg.batch_size} is not divisible by the {world} processes")
    return Dist(rank, world, device)


# ----------------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------------

class StepBatches(Sampler[list[int]]):
    """Window indices of steps [start, end): epoch permutations seeded by (seed, epoch); rank r of w takes
    rows r, r+w, ... of the global batch. A function of the step alone, so resuming is exact."""

    def __init__(self, n: int, batch_size: int, seed: int, start: int, end: int, rank: int = 0, world: int = 1):
        self.n, self.batch_size, self.seed, self.start, self.end = n, batch_size, seed, start, end
        self.rank, self.world = rank, world
        self._perms: dict[int, np.ndarray] = {}

    def global_indices(self, step: int) -> np.ndarray:
        pos = step * self.batch_size + np.arange(self.batch_size)
        epochs, offsets = pos // self.n, pos % self.n
        return np.array([self._perm(int(e))[o] for e, o in zip(epochs, offsets)])

    def _perm(self, epoch: int) -> np.ndarray:
        if epoch not in self._perms:
            self._perms = {epoch: np.random.default_rng([self.seed, epoch]).permutation(self.n)}
        return self._perms[epoch]

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start, self.end):
            yield self.global_indices(step)[self.rank :: self.world].tolist()

    def __len__(self) -> int:
        return max(0, self.end - self.start)


def dataset_dims(reader: LeRobotDatasetReader, cfg: TrainConfig) -> tuple[int, int]:
    """(action_dim, state_dim) from info.json, with errors naming the feature (the state: data.state_keys())."""
    dims = []
    for key in (cfg.data.action_key, *cfg.data.state_keys()):
        if key not in reader.features:
            raise WorldmotError(f"{reader.root}/meta/info.json: no feature {key!r} (set data.action_key / "
                                f"data.state_key / data.environment_state_key; features: {sorted(reader.features)})")
        shape = reader.features[key]["shape"]
        dims.append(int(np.prod(shape)))
    return dims[0], sum(dims[1:])


def resolve_keypoints(reader: LeRobotDatasetReader, cfg: TrainConfig, announce: bool = True) -> None:
    """model.lambda_keypoint applies where the dataset has data.keypoint_key. Without the default key (most
    datasets other than worldmot's own) the run trains without the loss and its saved config says so
    (lambda_keypoint 0); a key named on purpose and absent is a one-line error."""
    if cfg.model.lambda_keypoint <= 0 or cfg.data.keypoint_key in reader.features:
        return
    if cfg.data.keypoint_key != DataConfig.keypoint_key:
        raise WorldmotError(f"{reader.root}/meta/info.json: model.lambda_keypoint={cfg.model.lambda_keypoint} needs "
                            f"the feature {cfg.data.keypoint_key!r} (set data.keypoint_key, or model.lambda_keypoint=0)")
    if announce:
        print(f"{reader.root}: no {cfg.data.keypoint_key!r}; training without the keypoint loss")
    cfg.model.lambda_keypoint = 0.0


def resolve_expert_actions(reader: LeRobotDatasetReader, cfg: TrainConfig) -> None:
    """data.expert_action_key applies where the dataset has it; a key other than the default that is absent
    is a one-line error, the default absent means the AR actions learn the executed actions."""
    key = cfg.data.expert_action_key
    if key and key not in reader.features:
        if key != DataConfig.expert_action_key:
            raise WorldmotError(f"{reader.root}/meta/info.json: no feature {key!r} (data.expert_action_key: name a "
                                f"feature of the dataset, or set it to '' to learn the executed actions)")
        cfg.data.expert_action_key = ""


def resolve_cameras(reader: LeRobotDatasetReader, cfg: TrainConfig) -> list[str]:
    """The camera feature keys each frame step shows, in order (data.cameras; empty: data.camera if set, else
    every camera of the dataset), written back to data.cameras, and their count to model.sequence.cameras."""
    names = list(cfg.data.cameras) or ([cfg.data.camera] if cfg.data.camera else list(reader.camera_keys))
    if not names:
        raise WorldmotError(f"{reader.root}: no camera feature (expected a video or image feature)")
    for name in names:
        if name not in reader.camera_keys:
            raise WorldmotError(f"data.cameras: {name!r} is not a camera of {reader.root} "
                                f"(expected some of {reader.camera_keys})")
    if len(set(names)) != len(names):
        raise WorldmotError(f"data.cameras={names}: a camera named twice")
    cfg.data.cameras, cfg.model.sequence.cameras = names, len(names)
    return names


def keypoint_key(cfg: TrainConfig) -> str:
    """The keypoint feature the run trains on ("" when model.lambda_keypoint is 0); after resolve_keypoints."""
    return cfg.data.keypoint_key if cfg.model.lambda_keypoint > 0 else ""


def build_model(cfg: TrainConfig, reader: LeRobotDatasetReader, train_set: WindowDataset) -> WorldModel:
    """A fresh model for the dataset: action/state sizes from info.json, action bins between the training
    episodes' q01/q99 (see ActionTokenizer.from_data), state normalisation from stats.json."""
    action_dim, state_dim = dataset_dims(reader, cfg)
    cfg.model.sequence.action_dim, cfg.model.sequence.state_dim = action_dim, state_dim
    keypoints = reader.features.get(keypoint_key(cfg))
    cfg.model.sequence.keypoints = int(np.prod(keypoints["shape"])) // 2 if keypoints else 0
    tok = ActionTokenizer.from_data(train_set.column(cfg.data.action_key), n_bins=cfg.model.sequence.action_bins)
    mean, std = state_normalisation(reader, cfg.data.state_keys())
    return WorldModel(cfg.model, tok, state_mean=mean, state_std=std)


def state_normalisation(reader: LeRobotDatasetReader, keys: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) of the state, each of its features' from stats.json (0 and 1 where it has none)."""
    means, stds = [], []
    for key in keys:
        st, dim = reader.stats.get(key, {}), int(np.prod(reader.features[key]["shape"]))
        means.append(np.asarray(st.get("mean", np.zeros(dim)), np.float32).reshape(-1))
        stds.append(np.maximum(np.asarray(st.get("std", np.ones(dim)), np.float32).reshape(-1), 1e-3))
    return np.concatenate(means), np.concatenate(stds)


def step_randomness(model: WorldModel, cfg: TrainConfig, step: int, rows: slice) -> dict:
    """Condition dropout masks, diffusion times and noise of the global batch at ``step``, this rank's rows."""
    B, K, m = cfg.batch_size, cfg.model.sequence.n_steps, cfg.model
    rng = np.random.default_rng([cfg.seed, step, 1])
    drops = {"drop_instruction": rng.random(B) < m.drop_instruction,
             "drop_reasoning": rng.random((B, 1)) < m.drop_reasoning,
             "drop_state": rng.random((B, K)) < m.drop_state}
    own = torch.from_numpy(rng.random(B) < m.own_context) if m.own_context > 0 else None
    t, noise = sample_noise(model, B, K, torch.Generator(model.device).manual_seed(cfg.seed * 1_000_003 + step))
    return {**{k: v[rows] for k, v in drops.items()}, "t": t[rows], "noise": noise[rows],
            "own_context": None if own is None else own[rows]}


def pack(model: WorldModel, windows: dict, drops: dict):
    frames = model.tokenize_frames(windows["frames"].numpy())
    states = model.normalize_state(windows["states"])
    return pack_windows(windows, cfg=model.cfg.sequence, vocab=model.vocab, text_tokenizer=model.text_tokenizer,
                        action_tokenizer=model.action_tokenizer, frame_tokens=frames, states=states, **drops)


# ----------------------------------------------------------------------------------------------------
# Optimisation
# ----------------------------------------------------------------------------------------------------

def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """Weight decay on matrices only (not on biases, norms, embeddings of positions)."""
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embed" not in n and "patch_pos" not in n]
    rest = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embed" not in n and "patch_pos" not in n)]
    o = cfg.optim
    return torch.optim.AdamW([{"params": decay, "weight_decay": o.weight_decay}, {"params": rest, "weight_decay": 0.0}],
                             lr=o.lr, betas=(o.beta1, o.beta2), fused=next(model.parameters()).is_cuda)


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to min_lr_ratio."""
    o = cfg.optim
    if step < o.warmup_steps:
        return (step + 1) / o.warmup_steps
    progress = min(1.0, (step - o.warmup_steps) / max(1, cfg.steps - o.warmup_steps))
    return o.min_lr_ratio + (1 - o.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


# ----------------------------------------------------------------------------------------------------
# The run
# ----------------------------------------------------------------------------------------------------

class MetricsLog:
    """RUN/metrics.jsonl: one JSON object per line; a resumed run first drops lines past its checkpoint."""

    def __init__(self, path: Path, resume_step: int | None):
        self.path = path
        if resume_step is not None and path.exists():
            keep = []
            for line in path.read_text().splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut by a kill
                if row.get("step", 0) <= resume_step:
                    keep.append(line)
            atomic_write(path, lambda tmp: tmp.write_text("".join(l + "\n" for l in keep)))
        elif resume_step is None and path.exists():
            path.unlink()

    def write(self, row: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")
            f.flush()
        fault_point("metrics.jsonl:appended")


def train_step(net: torch.nn.Module, model: WorldModel, opt: torch.optim.Optimizer, ema: WarmupEMA,
               finite: FiniteLossCheck, windows: dict, step: int, cfg: TrainConfig, proc: Dist,
               ) -> tuple[torch.Tensor, torch.Tensor, float]:
    """One optimisation step on this rank's collated ``windows`` of the global batch at 0-based ``step`` ->
    (the loss parts (loss, ce, fm, st, kp) averaged over the ranks, the gradient norm before clipping, the
    learning rate). ``net``: the model's loss (losses.WorldModelLoss), or its DDP wrapper. On a GPU nothing here waits for the GPU: the
    host packs the next batch while this step runs (tests/test_gpu_training.py)."""
    rnd = step_randomness(model, cfg, step, slice(proc.rank, None, proc.world))
    batch = pack(model, windows, {k: v for k, v in rnd.items() if k.startswith("drop")})
    lr = cfg.optim.lr * lr_factor(step, cfg)  # a function of the step: nothing to restore on resume
    for group in opt.param_groups:
        group["lr"] = lr
    with torch.autocast(proc.device.type, dtype=torch.bfloat16, enabled=proc.device.type == "cuda"):
        out = net(batch, t=rnd["t"], noise=rnd["noise"], own_context=rnd["own_context"])
    opt.zero_grad(set_to_none=True)
    out["loss"].backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
    parts = torch.stack([out[k].detach() for k in LOSS_PARTS]).float()
    if proc.world > 1:
        dist.all_reduce(parts)
        parts /= proc.world
    finite.check(step, parts, opt)
    opt.step()
    ema.update_parameters(model)
    return parts, grad_norm, lr


def train(cfg: TrainConfig, resume: bool = False) -> Path:
    """Train; returns the run folder (RUN/model holds the exported EMA model)."""
    cfg.check()
    if cfg.attention == "flex" and not (cfg.compile and cfg.compile_scope == "layer"):
        raise WorldmotError("attention=flex: needs compile=true and compile_scope=layer (flex attention runs compiled)")
    proc = setup_processes(cfg)
    if cfg.attention == "flex" and proc.device.type != "cuda":
        raise WorldmotError(f"attention=flex: trains on CUDA only (torch has no flex attention backward on the "
                            f"{proc.device.type}); use attention=sdpa")
    run_dir = Path(cfg.run_dir)
    named = cfg.data.cameras or ([cfg.data.camera] if cfg.data.camera else [])
    reader = LeRobotDatasetReader(dataset_folder(cfg.data.root, named))
    start_step, state = 0, None
    if resume:
        cfg, state = _resumed(cfg, run_dir, tidy=proc.main)
        start_step = state["step"] if state is not None else 0
    elif proc.main and run_dir.is_dir() and any(run_dir.iterdir()):
        held = "checkpoints" if ckpt.list_checkpoints(run_dir) else f"{sorted(p.name for p in run_dir.iterdir())[0]!r}"
        raise WorldmotError(f"run_dir {run_dir}: not empty, holds {held} (expected a new folder, or --resume)")
    elif run_dir.exists() and not run_dir.is_dir():
        raise WorldmotError(f"run_dir {run_dir}: is a file (expected a run folder)")

    if reader.num_episodes == 0:
        raise WorldmotError(f"{reader.root}/meta/info.json: total_episodes 0 (expected a dataset with episodes)")
    dataset_dims(reader, cfg)  # a dataset without the features fails before anything is built
    resolve_keypoints(reader, cfg, announce=proc.main)
    cameras = resolve_cameras(reader, cfg)
    resolve_expert_actions(reader, cfg)
    require_finite(reader, [k for k in (cfg.data.action_key, *cfg.data.state_keys(), keypoint_key(cfg),
                                        cfg.data.expert_action_key) if k])
    trained_on = {"env": reader.robot_type, "features": {k: list(reader.features[k]["shape"]) for k in
                                                         (cfg.data.action_key, *cfg.data.state_keys())},
                  "cameras": cameras, "state_keys": cfg.data.state_keys()}
    train_eps, val_eps = split_episodes(reader.num_episodes, cfg.data.val_fraction, cfg.seed)
    seq = cfg.model.sequence
    kw = dict(cameras=cameras, image_size=seq.image_size, resize=seq.resize,
              chunk=seq.chunk, state_key=cfg.data.state_keys(), action_key=cfg.data.action_key,
              keypoint_key=keypoint_key(cfg), expert_action_key=cfg.data.expert_action_key)
    train_set = WindowDataset(reader, n_steps=seq.n_steps, episodes=train_eps, stride=cfg.data.stride, **kw)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, reader, train_set).to(proc.device)
    if state is not None and "action_tokenizer" in state["extra"]:  # the run's bins, even if the data grew since
        model.action_tokenizer = ActionTokenizer.from_dict(state["extra"]["action_tokenizer"])
    ema = WarmupEMA(model, cfg.optim.ema_decay)
    opt = make_optimizer(model, cfg)
    if state is not None:
        load_weights(model, state["model"], f"{run_dir}/checkpoints (step {start_step}) model.safetensors", strict=True)
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["optim"])
        if state["rng"] is not None:
            torch.set_rng_state(state["rng"])
        if proc.main and exported_step(run_dir / "model") != start_step:  # killed between checkpoint and export
            save_model(ema.module, run_dir / "model", trained_on=trained_on, step=start_step)

    sampler = StepBatches(len(train_set), cfg.batch_size, cfg.seed, start_step, cfg.steps, proc.rank, proc.world)
    loader = DataLoader(train_set, batch_sampler=sampler, num_workers=cfg.data.num_workers, collate_fn=collate_windows,
                        persistent_workers=False, prefetch_factor=4 if cfg.data.num_workers else None)
    val_batch = _validation_batch(reader, val_eps or train_eps[:1], cfg, kw) if proc.main else None

    net = WorldModelLoss(model)
    if proc.world > 1:
        net = torch.nn.parallel.DistributedDataParallel(net, device_ids=[proc.device.index] if proc.device.type == "cuda" else None)
    if cfg.compile:  # the trunk, regionally: one layer graph compiles in a fraction of the whole model's time
        model.trunk.compile(cfg.compile_scope, attention=cfg.attention)

    log = MetricsLog(run_dir / "metrics.jsonl", start_step if resume else None) if proc.main else None
    viz = None
    if cfg.rerun and proc.main:
        from worldmot.viz.training import TrainingRecorder

        viz = TrainingRecorder(run_dir, resume=resume)
    if proc.main:
        run_dir.mkdir(parents=True, exist_ok=True)
    tokens_per_sample = model.layout().length
    bar = tqdm(total=cfg.steps, initial=start_step, desc="train", disable=not proc.main, dynamic_ncols=True)
    t_last, tokens_since = time.perf_counter(), 0
    step = start_step
    last_good = ckpt.latest_checkpoint(run_dir)
    finite = FiniteLossCheck(proc.device, ("ce", "fm", "st", "kp"), lambda: last_good)
    for step, windows in enumerate(loader, start=start_step):
        parts, grad_norm, lr = train_step(net, model, opt, ema, finite, windows, step, cfg, proc)
        tokens_since += tokens_per_sample * cfg.batch_size
        done = step + 1
        if proc.main and (done % cfg.log_every == 0 or done == cfg.steps):
            finite.flush()
            now = time.perf_counter()
            tps = tokens_since / (now - t_last)
            t_last, tokens_since = now, 0
            loss, ce, fm, st, kp = parts.tolist()
            row = {"step": done, "loss": loss, "ce": ce, "fm": fm, "st": st, "kp": kp, "lr": lr, "grad_norm": float(grad_norm), "tokens_per_s": tps}
            log.write(row)
            if viz:
                viz.log_metrics(row)
            bar.set_postfix(loss=f"{loss:.3f}", ce=f"{ce:.3f}", fm=f"{fm:.4f}", st=f"{st:.3f}", kp=f"{kp:.3f}",
                            tok_s=f"{tps:,.0f}")
        bar.update(1)
        if proc.main and (done % cfg.val.every == 0 or done == cfg.steps):
            finite.flush()
            row = _validate(model, ema, val_batch, cfg, done, log, viz)
            bar.write(f"step {done}: " + "  ".join(f"{k} {v:.3f}" for k, v in row.items()))
        if done % cfg.checkpoint_every == 0 or done == cfg.steps:
            finite.flush()  # on every rank: the ranks' parts are the same, so all of them stop together
            if proc.main:
                if done == cfg.steps:  # before the last checkpoint: a run that has it has all its outputs
                    _plot_curves(run_dir)
                last_good = ckpt.save_checkpoint(run_dir, done, model, ema, opt, cfg, keep=cfg.keep_checkpoints,
                                                 extra={"action_tokenizer": model.action_tokenizer.to_dict()})
                save_model(ema.module, run_dir / "model", trained_on=trained_on, step=done)
            if proc.world > 1:
                dist.barrier()
    bar.close()
    if viz:
        viz.close()
    if proc.main and not (run_dir / "curves.png").exists():  # a finished run resumed (its curves deleted)
        _plot_curves(run_dir)
    if proc.world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return run_dir


def _resumed(cfg: TrainConfig, run_dir: Path, tidy: bool = True) -> tuple[TrainConfig, dict | None]:
    """(the config the run was started with, the state of its newest complete checkpoint). The run keeps its
    config but for its length and its validation, checkpoint and logging cadence (a longer run is allowed).
    A run killed before its first checkpoint starts over: (cfg, None). ``tidy``: first clean what a kill left
    (rank 0 alone: the other ranks would race it)."""
    if tidy:
        ckpt.clean_partial(run_dir)
        restore_dir(run_dir / "model")  # before the temporaries go: a model folder a kill left moved aside
        remove_temporaries(run_dir)
    latest = ckpt.latest_checkpoint(run_dir)
    if latest is None and _killed_before_first_checkpoint(run_dir):
        return cfg, None
    if latest is None:
        raise WorldmotError(f"{run_dir}/checkpoints: no checkpoint to resume from")
    state = ckpt.load_checkpoint(latest)
    saved = from_yaml_text(TrainConfig, state["config_yaml"], source=str(latest / "config.yaml"))
    saved.steps, saved.val, saved.checkpoint_every, saved.log_every = cfg.steps, cfg.val, cfg.checkpoint_every, cfg.log_every
    if tidy:
        ckpt.prune(run_dir, saved.keep_checkpoints)  # a kill between a checkpoint's save and its pruning
    return saved, state


def _plot_curves(run_dir: Path) -> None:
    from worldmot.training.plots import plot_curves

    plot_curves(run_dir / "metrics.jsonl", run_dir / "curves.png")


def _killed_before_first_checkpoint(run_dir: Path) -> bool:
    """The run folder holds only what a run writes before its first checkpoint (the metrics, an empty
    checkpoints/, its Rerun recording): nothing anyone could want back, so it may start over."""
    names = {p.name for p in run_dir.iterdir() if not is_temporary(p)} if run_dir.is_dir() else set()
    early = {"metrics.jsonl", "checkpoints"} | {p.name for p in run_dir.glob("train*.rrd")}  # rerun=true's
    checkpoints = run_dir / "checkpoints"
    empty_checkpoints = all(is_temporary(p) for p in checkpoints.iterdir()) if checkpoints.is_dir() else True
    return bool(names) and names <= early and empty_checkpoints


def _validate(model: WorldModel, ema: WarmupEMA, val_batch: dict, cfg: TrainConfig, done: int, log: MetricsLog,
              viz) -> dict:
    """Validation of the EMA weights on the held-out windows after ``done`` steps, logged; returns its row."""
    samples: list = []
    row = validate(ema.module, val_batch, cfg.val.horizons, cfg.val.flow_steps, cfg.seed, samples=samples,
                   full=cfg.val.full)
    r2 = state_read_r2(ema.module, val_batch)
    for m in (model, ema.module):  # the planner weights each state dimension by how well it is read
        m.state_read_r2.copy_(r2)
    row["state_r2"] = float(r2.mean())
    log.write({"step": done, "split": "val", **row})
    if viz:
        viz.log_metrics({"step": done, "split": "val", **row})
        if samples:
            viz.log_validation(done, *samples[0])
    return row


def _validation_batch(reader, episodes: list[int], cfg: TrainConfig, kw: dict) -> dict:
    """A fixed set of validation windows with 1 + max(horizons) frame steps (the same at every validation)."""
    n_steps = 1 + max(cfg.val.horizons)
    ds = WindowDataset(reader, n_steps=n_steps, episodes=episodes, stride=cfg.model.sequence.chunk, **kw)
    n = min(len(ds), cfg.val.batches * cfg.batch_size)
    pick = np.sort(np.random.default_rng(cfg.seed).choice(len(ds), n, replace=False))
    return collate_windows([ds[int(i)] for i in pick])
