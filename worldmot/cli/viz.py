"""``worldmot viz``: look at data in Rerun.

    worldmot viz dataset DIR [--episodes 0 2 5] [--out FILE.rrd] [--serve [--bind ADDR]] | [--spawn]

writes FILE.rrd (default: ./<dataset folder name>.rrd) and prints how to open it; ``--serve`` then hosts the
web viewer (bound to 127.0.0.1 unless --bind says otherwise) until Ctrl-C; ``--spawn`` opens the native
viewer where there is a display.
"""
from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="what", metavar="WHAT", required=True)
    ds = sub.add_parser("dataset", help="a LeRobot dataset: cameras, state, action, text, reward/done/success",
                        description="Write a LeRobot dataset's episodes to a Rerun .rrd file (one tab per episode).")
    ds.add_argument("root", metavar="DATASET", help="LeRobot dataset folder (v3.0 or v2.1) or a Hugging Face Hub "
                    "dataset id (lerobot/pusht, optionally @revision)")
    ds.add_argument("--episodes", type=int, nargs="+", metavar="N", help="episode indices (default: all)")
    ds.add_argument("--out", metavar="FILE.rrd", help="output file (default: ./<DIR name>.rrd)")
    ds.add_argument("--compress", choices=("auto", "always", "never"), default="auto",
                    help="camera frames as JPEG: auto (large frames or large recordings), always, never")
    view = ds.add_mutually_exclusive_group()
    view.add_argument("--serve", action="store_true", help="then host the web viewer until Ctrl-C")
    view.add_argument("--spawn", action="store_true", help="then open the native viewer (needs a display)")
    ds.add_argument("--bind", default="127.0.0.1", metavar="ADDR",
                    help="with --serve: the address to listen on (default 127.0.0.1; 0.0.0.0 for every interface)")
    ds.add_argument("--web-port", type=int, default=9090, help="with --serve: the web viewer's port (default 9090)")
    ds.add_argument("--grpc-port", type=int, default=9876, help="with --serve: the data server's port (default 9876)")


def main(args: argparse.Namespace) -> int:
    from worldmot.errors import WorldmotError
    from worldmot.viz import viewer
    from worldmot.datasets.hub import dataset_folder
    from worldmot.viz.dataset import dataset_to_rrd
    from worldmot.viz.images import ImagePolicy

    if args.what != "dataset":  # pragma: no cover - argparse restricts the choices
        raise WorldmotError(f"viz {args.what}: unknown (expected dataset)")
    name = Path(args.root).resolve().name if Path(args.root).exists() else args.root.rsplit("/", 1)[-1].split("@")[0]
    out = Path(args.out) if args.out else Path.cwd() / f"{name or 'dataset'}.rrd"
    if args.spawn:
        viewer.check_display(out)  # the one-line error before any work is done
    res = dataset_to_rrd(dataset_folder(args.root), out, args.episodes, images=ImagePolicy(compress=args.compress))
    size = out.stat().st_size / 2**20
    print(f"{out}: {len(res.episodes)} episodes, {res.frames} frames, {size:.1f} MB"
          f"{' (JPEG frames)' if res.jpeg else ''}")
    if args.serve:
        return viewer.serve(out, args.bind, args.web_port, args.grpc_port)
    if args.spawn:
        viewer.spawn(out)
        return 0
    print(f"open it with: {viewer.open_hint(out)}")
    return 0
