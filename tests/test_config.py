"""Typed configs: YAML + key=value overrides; bad keys, types and missing values are one-line errors."""
from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from worldmot.config import MISSING, ModelConfig, from_yaml_text, load_config, to_yaml
from worldmot.errors import ConfigError


@dataclass
class Needs:
    root: str = MISSING
    steps: int = 10


def test_model_sizes_and_overrides():
    tiny = load_config(ModelConfig)
    assert tiny.width == 128
    for size in ("tiny", "small", "base"):
        cfg = load_config(Wrapper, overrides=[f"model={size}"]).model
        assert cfg.name == size
    cfg = load_config(Wrapper, overrides=["model=small", "model.depth=3", "model.sequence.chunk=2"]).model
    assert (cfg.width, cfg.depth, cfg.sequence.chunk) == (384, 3, 2)
    dense = load_config(Wrapper, overrides=["model=dense"]).model
    assert set(dense.experts.values()) == {"shared"}


@dataclass
class Wrapper:
    model: ModelConfig = field(default_factory=ModelConfig)


@pytest.mark.parametrize("override, match", [
    (["model.widht=3"], r"unknown config key 'model.widht'"),
    (["model.width=wide"], r"config key 'model.width' has the wrong type"),
    (["model=huge"], r"model=huge: no config .*huge.yaml"),
    (["model.width"], r"expected key=value"),
])
def test_bad_overrides_name_the_key(override, match):
    with pytest.raises(ConfigError, match=match) as err:
        load_config(Wrapper, overrides=override)
    assert "\n" not in str(err.value)


def test_missing_value_names_the_key(tmp_path):
    with pytest.raises(ConfigError, match="'root' is required"):
        load_config(Needs)
    assert load_config(Needs, overrides=["root=/data"]).root == "/data"
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps: [1, 2\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_config(Needs, files=[bad], overrides=["root=x"])
    with pytest.raises(ConfigError, match="nope.yaml: config file not found"):
        load_config(Needs, files=[tmp_path / "nope.yaml"])


def test_yaml_round_trip():
    cfg = load_config(Wrapper, overrides=["model=two_path", "model.sequence.image_size=32"]).model
    assert from_yaml_text(ModelConfig, to_yaml(cfg)) == cfg


def test_configs_are_named_the_same_way_everywhere(tmp_path, monkeypatch):
    from worldmot.config import config_dir, named_config

    monkeypatch.chdir(tmp_path)  # outside the checkout: the built-in configs come from the installed package
    assert named_config("plan", "objects") == config_dir() / "plan" / "objects.yaml"
    assert named_config("train", "tiny").is_file()
    mine = tmp_path / "mine.yaml"
    mine.write_text("horizon: 3\n")
    assert named_config("plan", str(mine)) == mine
    with pytest.raises(ConfigError, match=r"plan config 'nope': not a file and not one of \[.*'objects'"):
        named_config("plan", "nope")
    with pytest.raises(ConfigError, match="gone.yaml: config file not found"):
        named_config("plan", "gone.yaml")


def test_a_group_is_named_by_a_builtin_name_or_a_yaml_path(tmp_path):
    from worldmot.training.config import TrainConfig

    mine = tmp_path / "my_model.yaml"
    mine.write_text("name: mine\nwidth: 96\nheads: 3\n")
    cfg = load_config(TrainConfig, overrides=[f"model={mine}", "run_dir=r", "data.root=d"])
    assert (cfg.model.name, cfg.model.width, cfg.model.heads) == ("mine", 96, 3)
    run = tmp_path / "run.yaml"
    run.write_text(f"model: {mine}\nsteps: 7\n")
    cfg = load_config(TrainConfig, files=[run], overrides=["run_dir=r", "data.root=d"])
    assert cfg.model.width == 96 and cfg.steps == 7
    assert load_config(TrainConfig, overrides=["model=small", "run_dir=r", "data.root=d"]).model.name == "small"
    with pytest.raises(ConfigError, match="model=nope: no config .*nope.yaml \\(expected a YAML file or one of"):
        load_config(TrainConfig, overrides=["model=nope"])
    with pytest.raises(ConfigError, match="gone.yaml"):
        load_config(TrainConfig, overrides=[f"model={tmp_path / 'gone.yaml'}"])
