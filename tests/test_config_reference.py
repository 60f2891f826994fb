"""``worldmot train --help`` lists every key, generated from the config dataclasses; ``--print-config``."""
from __future__ import annotations

import dataclasses

import pytest
import yaml

from worldmot.cli import main as cli_main
from worldmot.config import merge_config
from worldmot.config_reference import config_keys, field_comments, first_sentence
from worldmot.planning.config import PlannerConfig
from worldmot.training.config import TrainConfig


@dataclasses.dataclass
class Documented:
    plain: int = 1  # on its line
    # above it,
    # over two lines
    above: str = "x"
    bare: float = 0.5
    nested: dict = dataclasses.field(default_factory=dict)  # a factory


def test_comments_beside_or_above_a_field_are_its_meaning():
    assert field_comments(Documented) == {"plain": "on its line", "above": "above it, over two lines",
                                          "nested": "a factory"}


@pytest.mark.parametrize("schema", [TrainConfig, PlannerConfig])
def test_every_key_says_what_it_does(schema):
    keys = config_keys(schema, merge_config(schema))
    assert [k.key for k in keys if not k.meaning] == []
    assert len({k.key for k in keys}) == len(keys)


def help_of(command: str, capsys) -> str:
    with pytest.raises(SystemExit) as done:
        cli_main([command, "--help"])
    assert done.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("command,schema", [("train", TrainConfig), ("eval", PlannerConfig)])
def test_help_lists_every_key(capsys, command, schema):
    out = help_of(command, capsys)
    for key in config_keys(schema, merge_config(schema)):
        assert f"\n  {key.key} = " in out, key.key


def test_train_help_shows_the_default_runs_values(capsys):
    out = help_of("train", capsys)
    assert "  steps = 600    # optimizer steps of the run" in out  # the default run's value (configs/train/tiny.yaml)
    assert "  optim.lr = 0.002    # peak learning rate" in out
    assert "model=NAME (base, dense, small, tiny, two_path)" in out


def test_print_config_resolves_and_writes_nothing(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli_main(["train", "--print-config", "model=small", "steps=7", f"run_dir={tmp_path / 'run'}"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["steps"] == 7 and printed["model"]["name"] == "small" and printed["data"]["root"] == "???"
    assert list(tmp_path.iterdir()) == []
    assert cli_main(["train", "--print-config", "optim.nope=1"]) == 2
    assert "unknown config key 'optim.nope'" in capsys.readouterr().err


def test_version(capsys):
    from worldmot import __version__

    assert cli_main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"worldmot {__version__}"


def test_first_sentence_is_one_short_line():
    assert first_sentence("does a thing. Then more about it") == "does a thing"
    assert first_sentence("a (e.g. b) c") == "a (e.g. b) c"
    assert len(first_sentence("word " * 100)) <= 100

