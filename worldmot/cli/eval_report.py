"""``worldmot eval-report DIR...``: in-model vs in-simulator success of the same policies and checkpoints."""
from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="DIR", help="eval output folders (or eval_info.json files)")
    parser.add_argument("--out", metavar="FILE.md", help="also write the report (markdown) and FILE.json")


def main(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from worldmot.evaluation.agreement import (agreement, find_eval_infos, pair_up, pair_up_per_task,
                                                 per_task_markdown, report_markdown)
    from worldmot.io import atomic_write

    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)  # an unwritable --out fails first
    infos = find_eval_infos(args.paths)
    pairs = pair_up(infos)
    stats = agreement(pairs)
    task_pairs = pair_up_per_task(infos)  # multi-task envs (per_task in eval_info.json): policy x task
    text = report_markdown(pairs, stats) + per_task_markdown(task_pairs)
    if len(task_pairs) >= 2:
        stats = {**stats, "per_task": {**agreement(task_pairs), "pairs": task_pairs}}
    print(text, end="")
    if args.out:
        out = Path(args.out)
        for path, content in ((out, text), (out.with_suffix(".json"), json.dumps({**stats, "pairs": pairs}, indent=2))):
            atomic_write(path, lambda tmp, content=content: tmp.write_text(content))
    return 0
