"""Colours and instruction wordings of the built-in tasks.

Each task has a training set of wordings and a disjoint held-out set (``held_out=True``) for evaluating
whether a model follows wordings it never saw. Colour names are parsed back out of an instruction by
``parse_colours`` so that a policy can work from the instruction text alone.
"""
from __future__ import annotations

import re

import numpy as np

# RGBA; far apart in hue so that they stay distinguishable at 64x64 under the flat lighting of the scenes.
COLOURS: dict[str, tuple[float, float, float, float]] = {
    "red": (0.90, 0.10, 0.10, 1.0),
    "green": (0.10, 0.75, 0.15, 1.0),
    "blue": (0.10, 0.25, 0.95, 1.0),
    "yellow": (0.95, 0.85, 0.10, 1.0),
    "purple": (0.60, 0.15, 0.80, 1.0),
    "cyan": (0.10, 0.85, 0.90, 1.0),
}

REACH_TEMPLATES = [
    "reach the {target} target",
    "move to the {target} target",
    "go to the {target} target",
    "touch the {target} target",
    "reach for the {target} target",
    "put the effector on the {target} target",
    "move the effector onto the {target} target",
    "go touch the {target} one",
]
REACH_HELD_OUT = [
    "head over to the {target} target",
    "bring the effector to the {target} marker",
    "navigate to the {target} spot",
]

PUSH_TEMPLATES = [
    "push the {block} block onto the {pad} pad",
    "push the {block} block to the {pad} pad",
    "move the {block} block onto the {pad} pad",
    "slide the {block} block onto the {pad} pad",
    "put the {block} block on the {pad} pad",
    "shove the {block} block over to the {pad} pad",
    "get the {block} block to the {pad} pad",
]
PUSH_HELD_OUT = [
    "nudge the {block} cube onto the {pad} square",
    "the {block} block belongs on the {pad} pad",
    "bring the {block} block over to the {pad} pad",
]

_COLOUR_RE = re.compile(r"\b(" + "|".join(COLOURS) + r")\b")


def templates(task: str, held_out: bool) -> list[str]:
    """The wordings of ``task`` ("reach" or "push"), training or held-out set."""
    table = {
        ("reach", False): REACH_TEMPLATES,
        ("reach", True): REACH_HELD_OUT,
        ("push", False): PUSH_TEMPLATES,
        ("push", True): PUSH_HELD_OUT,
    }
    return table[(task, bool(held_out))]


def sample_instruction(rng: np.random.Generator, task: str, held_out: bool, **colours: str) -> str:
    """One wording of ``task`` with the colour slots filled, e.g. target="red"."""
    options = templates(task, held_out)
    return options[int(rng.integers(len(options)))].format(**colours)


def parse_colours(text: str) -> list[str]:
    """Colour names in the order they appear in ``text``; all wordings name the object before the goal."""
    return _COLOUR_RE.findall(text.lower())
