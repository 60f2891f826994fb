"""The ``worldmot`` command line: one subcommand per job, each in its own module of this package.

A command module defines ``add_arguments(parser)`` and ``main(args) -> int``; it is imported only when
its command runs, so ``worldmot --help`` stays fast.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from worldmot.errors import WorldmotError

# command -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("worldmot.cli.demo", "the main job end to end: record, train, evaluate four policies, report.md, demo.rrd"),
    "info": ("worldmot.cli.info", "print the version, the built-in configs and the torch set-up"),
    "train": ("worldmot.cli.train", "train a world model on a LeRobot dataset (torchrun -m worldmot train for DDP)"),
    "record": ("worldmot.cli.record", "record a policy's episodes in an env as a LeRobot v3.0 dataset"),
    "eval": ("worldmot.cli.eval", "run a policy (random, scripted, model, planner) in an env; eval_info.json, videos, .rrd"),
    "eval-report": ("worldmot.cli.eval_report", "in-model vs in-simulator success of evaluated policies: Pearson r, rank agreement"),
    "viz": ("worldmot.cli.viz", "write a dataset to a Rerun .rrd (cameras, series, text) and open it"),
}


def build_parser(commands: dict[str, tuple[str, str]] = COMMANDS) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="worldmot", description="Mixture-of-Transformers world models for robots.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in commands.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        p.add_argument  # arguments are added lazily in main() for the chosen command only
    return parser


def one_line(err: WorldmotError) -> str:
    """The error's own line. An error raised in a DataLoader worker comes back as "Caught WorldmotError in
    DataLoader worker process 0." plus the worker's traceback; its last line is the original message."""
    text = str(err).strip()
    if text.startswith("Caught ") and "\n" in text:
        last = text.splitlines()[-1]
        text = last.split(": ", 1)[1] if last.startswith(("worldmot.errors.", "WorldmotError")) else last
    return text.replace("\r", "\\r").replace("\n", "\\n")  # a path with a newline stays on the one line


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    if argv and argv[0] == "--version":
        from worldmot import __version__

        print(f"worldmot {__version__}")
        return 0
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        args = parser.parse_args(argv)  # prints help or "invalid choice" and exits
        parser.print_help()
        return 2
    name = argv[0]
    module = importlib.import_module(COMMANDS[name][0])
    sub = argparse.ArgumentParser(prog=f"worldmot {name}", description=COMMANDS[name][1])
    module.add_arguments(sub)
    args = sub.parse_args(argv[1:])
    try:
        return int(module.main(args) or 0)
    except WorldmotError as e:
        print(f"worldmot {name}: error: {one_line(e)}", file=sys.stderr)
        return 2
    except OSError as e:
        if e.filename is None:
            raise  # not about a path the user named: a bug, keep its traceback
        print(f"worldmot {name}: error: {e.filename}: {e.strerror or e} (expected a path it can write)",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"worldmot {name}: interrupted", file=sys.stderr)
        return 130
