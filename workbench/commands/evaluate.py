"""`workbench evaluate PROJECT`: does the swap look like the source, with the destination's pose and expression?"""

from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evaluate", help="score the swap: identity, pose, expression, flicker (writes PROJECT/evaluation.json)",
        description="Score the merged frames (or, when none exist, a sample merged in memory with the run's "
        "model): identity distance to the source and destination (dlib face embedding), ID retrieval, head-pose "
        "error, expression error and flicker. Faces the detector cannot find are counted.",
    )
    p.add_argument("project", help="project folder")
    p.add_argument("--run", default=None, help="training run (default: the most recently updated one)")
    p.add_argument("--frames", type=int, default=48, help="frames to score, evenly spread (default 48; 0 = all)")
    p.add_argument("--sample", action="store_true",
                   help="merge a fresh sample with the run's model even when merged frames exist")
    p.add_argument("--device", default="cpu", help="device for the model when merging a sample (default cpu)")
    p.add_argument("--json", action="store_true", help="also print the summary as one JSON object on the last line")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from ..quality import evaluate_project

    if args.frames < 0:
        raise ConfigError(f"--frames must be >= 0, got {args.frames}")
    evaluation = evaluate_project(args.project, run=args.run, max_frames=args.frames,
                                  merge_sample=True if args.sample else None, device=args.device,
                                  progress=not args.no_progress, log=print)
    print(evaluation.format())
    print(f"saved: {evaluation.path}")
    if args.json:
        print(json.dumps({**evaluation.summary, "run": evaluation.run, "step": evaluation.step}))
    return 0
