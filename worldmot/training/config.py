"""The training run's typed config (``worldmot train CONFIG key=value ...``)."""
from __future__ import annotations

from dataclasses import dataclass, field

from worldmot.config import AT_LEAST_1, FRACTION, MISSING, NON_NEGATIVE, POSITIVE, ModelConfig, check_fields


@dataclass
class DataConfig:
    root: str = MISSING  # a local LeRobot v3.0 / v2.1 dataset folder
    camera: str = ""  # feature key of one camera to train on (data.cameras empty)
    # feature keys of the cameras each frame step shows, in this order (model.sequence.cameras is their count);
    # empty: data.camera if set, else every camera of the dataset
    cameras: list[str] = field(default_factory=list)
    state_key: str = "observation.state"  # feature key of the proprioceptive state
    # feature key of privileged state appended to the proprioceptive state (observation.environment_state:
    # where the objects are, which a robot does not sense); empty: not read, the model sees only state_key
    environment_state_key: str = ""
    action_key: str = "action"  # feature key of the executed action
    # image (u, v) of the objects the instruction names, if the dataset has it: the model is taught to find
    # them in each frame (ModelConfig.lambda_keypoint); absent: no such loss
    keypoint_key: str = "observation.keypoints"
    # what the AR action tokens learn, where the dataset records it: the scripted expert's action at each step
    # (worldmot record writes it beside the executed action, also under exploration noise or a random policy);
    # the executed actions still condition the frames. Empty, or absent from the dataset: the executed action
    expert_action_key: str = "expert_action"
    val_fraction: float = 0.1  # held-out episodes for validation
    num_workers: int = 2  # DataLoader worker processes that decode video
    stride: int = 1  # window start every `stride` env steps

    def state_keys(self) -> list[str]:
        """The features whose concatenation is the model's state, in order."""
        return [self.state_key] + ([self.environment_state_key] if self.environment_state_key else [])


@dataclass
class OptimConfig:
    lr: float = 1e-3  # peak learning rate, reached after warmup_steps
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio
    warmup_steps: int = 100  # steps of linear warm-up to lr, then the cosine decay
    weight_decay: float = 0.05  # AdamW's decoupled weight decay, on weight matrices only (not biases, norms, embeddings)
    beta1: float = 0.9  # AdamW's first-moment decay
    beta2: float = 0.95  # AdamW's second-moment decay
    grad_clip: float = 1.0  # the gradients' global norm is clipped to this
    ema_decay: float = 0.995  # of the EMA weights that validation and RUN/model/ use


@dataclass
class ValConfig:
    every: int = 500  # steps between validations (and at the end)
    batches: int = 2  # validation batches of `batch_size` windows
    horizons: list[int] = field(default_factory=lambda: [1, 2, 4])  # open-loop frames ahead
    flow_steps: int = 1  # denoising steps per imagined frame in validation
    full: bool = True  # PSNR/SSIM, token accuracies, closed-loop metrics; false: held-out losses only (cheap)


@dataclass
class TrainConfig:
    run_dir: str = MISSING  # the run's folder: metrics.jsonl, curves.png, checkpoints/, model/
    seed: int = 0  # seeds the model's initialisation, the episode split, sampling and noise (same seed: same run)
    steps: int = 3000  # optimizer steps of the run
    batch_size: int = 32  # global batch (split over DDP ranks)
    device: str = "auto"  # auto | cpu | cuda
    compile: bool = False  # torch.compile the trunk (MoTTrunk.compile; GPU)
    compile_scope: str = "layer"  # layer: a layer with all its experts as one graph | blocks: each expert block's work
    attention: str = "sdpa"  # sdpa (the boolean mask) | flex (the mask's tiles; CUDA, compile=true, compile_scope=layer)
    threads: int = 0  # CPU threads per process; 0: all cores / ranks
    log_every: int = 10  # steps between lines of metrics.jsonl (and the progress bar's losses)
    checkpoint_every: int = 250  # steps between checkpoints (a killed run resumes from the newest)
    keep_checkpoints: int = 2  # newest checkpoints kept; older ones are deleted
    rerun: bool = False  # also log validation samples and curves to RUN/train.rrd
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    val: ValConfig = field(default_factory=ValConfig)

    def check(self) -> None:
        """A one-line ConfigError naming the key of a value the run cannot use (before anything is read or built)."""
        check_fields(self, "", {
            "steps": AT_LEAST_1, "batch_size": AT_LEAST_1, "log_every": AT_LEAST_1, "checkpoint_every": AT_LEAST_1,
            "keep_checkpoints": AT_LEAST_1, "threads": NON_NEGATIVE,
            "device": (lambda v: v in ("auto", "cpu", "cuda"), "auto, cpu or cuda"),
            "compile_scope": (lambda v: v in ("layer", "blocks"), "'layer' or 'blocks'"),
            "attention": (lambda v: v in ("sdpa", "flex"), "'sdpa' or 'flex'")})
        check_fields(self.optim, "optim.", {
            "lr": POSITIVE, "min_lr_ratio": FRACTION, "warmup_steps": NON_NEGATIVE, "weight_decay": NON_NEGATIVE,
            "beta1": (lambda v: 0 <= v < 1, "0 <= beta1 < 1"), "beta2": (lambda v: 0 <= v < 1, "0 <= beta2 < 1"),
            "grad_clip": POSITIVE, "ema_decay": (lambda v: 0 <= v < 1, "0 <= ema_decay < 1")})
        check_fields(self.val, "val.", {
            "every": AT_LEAST_1, "batches": AT_LEAST_1, "flow_steps": AT_LEAST_1,
            "horizons": (lambda v: len(v) > 0 and min(v) >= 1, "a non-empty list of frames ahead, each >= 1")})
        check_fields(self.data, "data.", {
            "val_fraction": (lambda v: 0 <= v < 1, "0 <= val_fraction < 1"), "num_workers": NON_NEGATIVE,
            "stride": AT_LEAST_1})
        self.model.check("model.")
