"""Typed configs: dataclasses filled from configs/*.yaml with OmegaConf, overridable as ``key=value``.

A config group is a folder of configs/ (``configs/model/tiny.yaml``): the override ``model=tiny``
merges that file into the ``model`` key. Every other override is a dotted key into the schema.
Unknown keys, wrong types and missing values raise :class:`ConfigError` naming the key.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Sequence, TypeVar

import yaml
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, MissingMandatoryValue, OmegaConfBaseException, ValidationError

from worldmot.errors import ConfigError

# rules for check_fields: (is the value allowed?, what is expected)
AT_LEAST_1 = (lambda v: v >= 1, ">= 1")
NON_NEGATIVE = (lambda v: v >= 0, ">= 0")
POSITIVE = (lambda v: v > 0, "> 0")
FRACTION = (lambda v: 0 <= v <= 1, "a fraction in [0, 1]")


def check_fields(cfg: Any, prefix: str, rules: dict[str, tuple[Any, str]]) -> None:
    """A one-line ConfigError naming the first field of ``cfg`` (as ``prefix + name``) that its rule refuses."""
    for name, (allowed, expected) in rules.items():
        value = getattr(cfg, name)
        if not allowed(value):
            raise ConfigError(f"{prefix}{name}={value!r}: expected {expected}")

T = TypeVar("T")

__all__ = ["AT_LEAST_1", "FRACTION", "MISSING", "NON_NEGATIVE", "POSITIVE", "ModelConfig", "SequenceConfig", "check_fields",
           "config_dir", "from_yaml_text", "load_config", "merge_config", "named_config", "to_yaml"]


@dataclass
class SequenceConfig:
    """The token layout of one training window (docs/DESIGN.md, "The token sequence")."""

    n_steps: int = 3  # frame steps per window: f_0..f_{n-1}, each followed by an action chunk
    chunk: int = 4  # env actions per frame step
    image_size: int = 64  # frames are fitted to image_size x image_size (by `resize`)
    # how a frame that is not image_size x image_size is fitted: crop (the centred square of the short side,
    # resized) | letterbox (the whole frame, the long side resized, black bars on the short side)
    resize: str = "crop"
    cameras: int = 1  # cameras per frame step, each its own run of patch tokens (set from the dataset)
    patch_size: int = 8  # patch tokenizer: (image_size / patch_size)^2 tokens per frame
    frame_tokenizer: str = "patch"  # patch | latent
    latent_path: str = ""  # a local diffusers AutoencoderKL folder when frame_tokenizer=latent
    action_dim: int = 2  # action dimensions (set from the dataset)
    state_dim: int = 2  # state dimensions (set from the dataset)
    action_bins: int = 256  # bins per action dimension of the action tokens (uniform over the dataset's range)
    progress_bins: int = 20  # progress in [0, 1) -> bins; success has its own token
    instruction_len: int = 48  # bytes of instruction (padded / truncated)
    reasoning_len: int = 32  # bytes of reasoning text per step (padded / truncated)
    text_tokenizer: str = ""  # optional local `tokenizers` JSON file; empty: UTF-8 bytes
    keypoints: int = 0  # points whose image position the data gives: the named objects, then the effector (set from the dataset)

    def check(self, prefix: str = "model.sequence.") -> None:
        """A one-line ConfigError naming the key of a value the model cannot be built with."""
        check_fields(self, prefix, {
            "n_steps": (lambda v: v >= 2, ">= 2 (a frame and the next one to predict)"),
            "chunk": AT_LEAST_1, "image_size": AT_LEAST_1, "patch_size": AT_LEAST_1, "cameras": AT_LEAST_1,
            "resize": (lambda v: v in ("crop", "letterbox"), "'crop' or 'letterbox'"),
            "frame_tokenizer": (lambda v: v in ("patch", "latent"), "'patch' or 'latent'"),
            "action_bins": (lambda v: v >= 2, ">= 2"), "progress_bins": AT_LEAST_1,
            "instruction_len": AT_LEAST_1, "reasoning_len": AT_LEAST_1, "keypoints": NON_NEGATIVE})
        if self.image_size % self.patch_size:
            raise ConfigError(f"{prefix}patch_size={self.patch_size}: expected a divisor of {prefix}image_size "
                              f"({self.image_size})")


@dataclass
class ModelConfig:
    """Architecture of the MoT world model."""

    name: str = "tiny"  # the config's name, as written in run folders
    width: int = 128  # D, the width of every token
    depth: int = 4  # transformer layers (blocks)
    heads: int = 4  # attention heads (must divide width)
    mlp_ratio: float = 4.0  # feed-forward hidden width / width
    # modality -> expert name. Modalities: text, action, state, frame.
    # full MoT {text: text, action: action, state: action, frame: frame}; two-path {.. ar .., frame: dit};
    # dense: all to one expert.
    experts: dict[str, str] = field(
        default_factory=lambda: {"text": "text", "action": "action", "state": "action", "frame": "frame"}
    )
    # under autocast (CUDA training and planning) the residual stream between the layers is in the autocast
    # dtype (bf16), as Megatron-LM keeps it by default: the elementwise kernels around every block move fewer
    # bytes (docs/notes/gpu-training.md); true keeps it fp32. Runs without autocast (fp32 on the CPU) are the
    # same either way
    fp32_residual: bool = False
    # the experts' linear layers (QKV, output, MLP) with biases. The lean configs go without, as LLaMA-style
    # blocks do: each bias's gradient is a reduction over every token
    block_bias: bool = True
    # QK-norm's learned weight on the keys as well as the queries. The logits see only the product of the two;
    # without the key's (the lean configs), a key's expert no longer scales them per dimension, and one
    # weight's gradient reductions go (docs/notes/gpu-training.md)
    key_norm_weight: bool = True
    # > 0: a window without a KV cache attends in query tiles of this many rows, each over the run of keys
    # that covers what it may see (worldmot/model/query_tiles.py; the same function as one masked SDPA): only
    # part of the n x n product is computed, and tiles that see only allowed keys run without a mask (flash
    # kernels on a GPU).
    # 0: one SDPA call with the boolean mask (docs/notes/gpu-training.md)
    attention_query_tile: int = 0
    lambda_fm: float = 1.0  # weight of the flow-matching (frame) loss
    lambda_state: float = 0.1  # weight of the state read-out loss (the planner's goal cost reads it)
    # weight of the keypoint loss (datasets with keypoints; 0: off): each frame's patches say which of them
    # holds each point (a softmax over the patches) and where inside it, and the frame's [EOF] reads their
    # (u, v); the planner's object cost uses the patches' answer (WorldModel.locate_objects). The patches
    # find the objects locally; the read-out gathers them into one token (docs/notes/keypoints-and-
    # localisation.md). The tiny config turns it on (configs/model/tiny.yaml); a dataset without keypoints
    # trains without it
    lambda_keypoint: float = 0.0
    # weight, within the keypoint loss, of the keypoints-ahead head (worldmot/model/object_heads.py): the
    # points' placement on each frame corrected with the state, and at each step's [EOA] their change to the
    # next frame, both from the state and the chunk as numbers beside the hidden state. The planner's object
    # cost prices this prediction (Imagination.ahead) instead of re-reading the imagined frame: for
    # torque-controlled arms, whose imagined frames ignore the arm's velocity (docs/notes/reacher.md)
    lambda_keypoint_ahead: float = 0.0
    # weight of the same (u, v) read-out at each step's [BOA], the position that predicts the chunk's first
    # action bin: the objects gathered where the AR policy writes its action
    lambda_keypoint_boa: float = 0.0
    ahead_width: int = 256  # hidden width of that prediction's MLP (worldmot/model/object_heads.py)
    # initial weight of the QK-norm RMSNorms (attention logits scale with its square, or with it where the keys
    # have no weight): at 1 they are bounded by sqrt(head_dim), too flat for one token to single out one
    # patch; use 2 with keypoints
    qk_norm_gain: float = 1.0
    drop_instruction: float = 0.1  # condition dropout for classifier-free guidance
    # fraction of windows whose reasoning is dropped at every step (else at none), as the AR policy and the
    # planner's AR proposals act (no reasoning in their context): dropped per step, a step would mostly still
    # have an earlier step's reasoning, which names the target's position, to copy (docs/notes/ar-policy.md)
    drop_reasoning: float = 0.5
    drop_state: float = 0.5  # imagined steps have no proprioceptive state
    noisy_t_one: float = 0.25  # fraction of noisy frames trained at t=1 (pure noise: one-step generation)
    # fraction of training windows whose later context frames are the model's own one-step predictions
    # (costs a no-grad forward pass of those windows): imagination feeds its own frames back after the first.
    # 0: off (docs/notes/goal-cost.md)
    own_context: float = 0.0
    # CE weight of an action or progress token that repeats the one it could copy (the same action
    # dimension one action earlier, the previous step's progress): those carry little information, and
    # at weight 1 they let a model that copies look trained while its first action of a chunk was not
    ce_repeat_weight: float = 0.1
    # extra flow-matching weight of frame tokens that change from the last frame (the moving effector, the
    # pushed block: a few patches of 64, which plain MSE lets the model blur into a ghost). 0: off
    # (docs/notes/goal-cost.md)
    fm_motion_weight: float = 0.0
    sequence: SequenceConfig = field(default_factory=SequenceConfig)

    def check(self, prefix: str = "model.") -> None:
        """A one-line ConfigError naming the key of a value the model cannot be built or trained with."""
        weights = ("lambda_fm", "lambda_state", "lambda_keypoint", "lambda_keypoint_ahead", "lambda_keypoint_boa",
                   "ce_repeat_weight", "fm_motion_weight")
        check_fields(self, prefix, {
            "width": (lambda v: v >= 2 and v % 2 == 0, "an even number >= 2 (sinusoidal embeddings)"),
            "depth": AT_LEAST_1, "heads": AT_LEAST_1, "mlp_ratio": POSITIVE, "attention_query_tile": NON_NEGATIVE,
            "ahead_width": AT_LEAST_1, "qk_norm_gain": POSITIVE, **{w: NON_NEGATIVE for w in weights},
            **{f: FRACTION for f in ("drop_instruction", "drop_reasoning", "drop_state", "noisy_t_one", "own_context")}})
        if self.width % self.heads:
            raise ConfigError(f"{prefix}heads={self.heads}: expected a divisor of {prefix}width ({self.width})")
        modalities = sorted(ModelConfig.__dataclass_fields__["experts"].default_factory())
        if sorted(self.experts) != modalities:
            raise ConfigError(f"{prefix}experts={dict(self.experts)}: expected an expert name for each of {modalities}")
        self.sequence.check(prefix + "sequence.")


def config_dir() -> Path:
    """The folder of the built-in YAML configs (installed as package data ``worldmot.configs``)."""
    return Path(str(resources.files("worldmot.configs")))


def named_config(group: str, name: str) -> Path:
    """A config of ``group`` (train, model, plan) named the same way everywhere: a name of the built-in configs
    (configs/<group>/<name>.yaml, found wherever worldmot is installed) or a path to a YAML file."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found (expected a {group} config)")
        return path
    builtin = config_dir() / group / f"{name}.yaml"
    if not builtin.is_file():
        choices = sorted(p.stem for p in (config_dir() / group).glob("*.yaml"))
        raise ConfigError(f"{group} config {name!r}: not a file and not one of {choices}")
    return builtin


def _key_of(err: OmegaConfBaseException) -> str:
    key = getattr(err, "full_key", None) or getattr(err, "key", None)
    return str(key) if key else "?"


def _one_line(err: OmegaConfBaseException) -> str:
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return first


def _group_file(base: Path, group: str, name: str) -> Path | None:
    """The file a group value names: a YAML path (``model=my/model.yaml``) or a built-in name (``model=small``);
    None where ``group`` is not a config group."""
    if not (base / group).is_dir():
        return None
    path = Path(name)
    return path if path.suffix in (".yaml", ".yml") else base / group / f"{name}.yaml"


def _merge_override(conf: DictConfig, item: str, base: Path) -> DictConfig:
    if "=" not in item:
        raise ConfigError(f"override {item!r}: expected key=value")
    key, value = item.split("=", 1)
    group_file = _group_file(base, key, value) if "." not in key else None
    if group_file is not None:
        if not group_file.exists():
            choices = sorted(p.stem for p in (base / key).glob("*.yaml"))
            raise ConfigError(f"{key}={value}: no config {group_file} (expected a YAML file or one of {choices})")
        return OmegaConf.merge(conf, {key: OmegaConf.load(group_file)})
    return OmegaConf.merge(conf, OmegaConf.from_dotlist([item]))


def load_config(
    schema: type[T], files: Sequence[str | Path] = (), overrides: Sequence[str] = (), base: Path | None = None
) -> T:
    """Build a ``schema`` instance from YAML files and ``key=value`` overrides, in that order.

    Raises ConfigError (one line, naming the key or file) for unknown keys, wrong types and missing values.
    """
    conf = merge_config(schema, files, overrides, base)
    missing = sorted(OmegaConf.missing_keys(conf))
    if missing:
        raise ConfigError(f"config key {missing[0]!r} is required but has no value")
    try:
        return OmegaConf.to_object(conf)
    except OmegaConfBaseException as e:
        raise ConfigError(f"config key {_key_of(e)!r}: {_one_line(e)}") from None


def merge_config(
    schema: type, files: Sequence[str | Path] = (), overrides: Sequence[str] = (), base: Path | None = None
) -> DictConfig:
    """The ``schema``'s structured config with the YAML files and overrides merged in; required keys may still
    be missing (``???``). Raises ConfigError for unknown keys, wrong types, missing files and bad YAML."""
    base = base or config_dir()
    conf = OmegaConf.structured(schema)
    try:
        for f in files:
            path = Path(f)
            if not path.exists():
                raise ConfigError(f"{path}: config file not found")
            try:
                loaded = OmegaConf.load(path)
            except Exception as e:  # yaml errors carry several lines
                raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
            conf = OmegaConf.merge(conf, _resolve_groups(loaded, base))
        for item in overrides:
            conf = _merge_override(conf, item, base)
        OmegaConf.resolve(conf)
        return conf
    except ConfigKeyError as e:
        raise ConfigError(f"unknown config key {_key_of(e)!r}: {_one_line(e)}") from None
    except ValidationError as e:
        raise ConfigError(f"config key {_key_of(e)!r} has the wrong type: {_one_line(e)}") from None
    except MissingMandatoryValue as e:
        raise ConfigError(f"config key {_key_of(e)!r} is required but has no value") from None
    except OmegaConfBaseException as e:
        raise ConfigError(f"config key {_key_of(e)!r}: {_one_line(e)}") from None


def _resolve_groups(loaded: DictConfig, base: Path) -> DictConfig:
    """A YAML value ``model: tiny`` where configs/model/ exists means "the file configs/model/tiny.yaml" (a
    value ending in .yaml is a file path, as on the command line)."""
    out = {}
    for key, value in loaded.items():
        path = _group_file(base, str(key), value) if isinstance(value, str) else None
        if path is not None:
            if not path.exists():
                raise ConfigError(f"{key}: {value}: no config {path}")
            out[key] = OmegaConf.load(path)
        else:
            out[key] = value
    return OmegaConf.create(out)


def to_yaml(cfg: Any) -> str:
    """The resolved config as YAML text (what checkpoints store next to the weights)."""
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def from_yaml_text(schema: type[T], text: str, source: str = "config") -> T:
    """Parse YAML text saved by :func:`to_yaml` back into ``schema``; errors name ``source``."""
    try:
        conf = OmegaConf.merge(OmegaConf.structured(schema), OmegaConf.create(text))
        return OmegaConf.to_object(conf)
    except OmegaConfBaseException as e:
        raise ConfigError(f"{source}: config key {_key_of(e)!r}: {_one_line(e)}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{source}: not valid YAML ({str(e).splitlines()[0]})") from None


def replace(cfg: T, **changes: Any) -> T:
    """dataclasses.replace, re-exported so callers need one import."""
    return dataclasses.replace(cfg, **changes)
