"""`workbench demo [DIR]`: the whole pipeline offline on built-in faces (the README's main job)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import CONSENT_RULE
from ..demo import DEMO_MINUTES_CAP, DEMO_STEPS, DemoOptions, run_demo


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo",
        help="run the full pipeline offline on built-in demo faces (about 3-4 minutes on 2 CPU cores)",
        description="Extract, train (tiny preset) to a step target, merge, export and evaluate on Grace Hopper -> "
        "astronaut, with no downloads; writes a video, a contact sheet of every intermediate result and "
        "evaluation.json, and says plainly when the swap does not yet look like the source. Re-running "
        "continues training. " + CONSENT_RULE,
    )
    p.add_argument("folder", nargs="?", default="workbench-demo", help="demo project folder (default ./workbench-demo)")
    p.add_argument("--steps", type=int, default=DEMO_STEPS,
                   help=f"training step target (default {DEMO_STEPS}); a re-run whose swap does not read as the "
                   "source yet trains this many more")
    p.add_argument("--minutes", type=float, default=DEMO_MINUTES_CAP,
                   help=f"time cap for training in minutes, a safety net on slow or busy machines (default "
                   f"{DEMO_MINUTES_CAP:g}); when it stops training early the demo says so")
    p.add_argument("--seconds", type=float, default=4.0, help="length of the destination clip (default 4 s)")
    p.add_argument("--overwrite", action="store_true", help="start again from scratch")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    result = run_demo(DemoOptions(folder=Path(args.folder), train_steps=args.steps, train_minutes=args.minutes,
                                  clip_seconds=args.seconds, overwrite=args.overwrite, progress=not args.quiet))
    print("== done: synthetic media, for teaching only")
    print(result.format())
    return 0
