"""``worldmot eval-report DIR...``: in-model vs in-simulator success of the same policies and checkpoints."""
from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="DIR", help="eval output folders (or eval_info.json files)")
    parser.add_argument("--out", metavar="FILE.md", help="also write the report (markdown) and FILE.json")


def main(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from worldmot.evaluation.agreement import agreement, find_eval_infos, pair_up, report_markdown
    from worldmot.io import atomic_write

    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)  # an unwritable --out fails first
    pairs = pair_up(find_eval_infos(args.paths))
    stats = agreement(pairs)
    text = report_markdown(pairs, stats)
    print(text, end="")
    if args.out:
        out = Path(args.out)
        for path, content in ((out, text), (out.with_suffix(".json"), json.dumps({**stats, "pairs": pairs}, indent=2))):
            atomic_write(path, lambda tmp, content=content: tmp.write_text(content))
    return 0
