"""`workbench xseg {train,status,pause,resume,stop,apply,remove} PROJECT`: trainable face segmentation (DFL XSeg).

Runs live in ``PROJECT/xseg/<run>`` (default ``default``) with the face trainer's run-folder protocol.
"""

from __future__ import annotations

import argparse
import time

SIDES = {"src": ("src",), "dst": ("dst",), "both": ("src", "dst")}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "xseg", help="train / apply the XSeg face segmenter (occlusion-aware masks)",
        description="XSeg: a small segmentation network trained on the include/exclude polygons drawn in the app's "
        "Segment tab, or with zero labels on landmark-hull masks with synthetic occluders. `apply` writes the "
        "predicted mask into every face file; masked training and the merger's xseg-* modes then use it.",
    )
    sub = p.add_subparsers(dest="xseg_command", metavar="ACTION", required=True)

    t = sub.add_parser("train", help="train XSeg on PROJECT/aligned/src + dst (resumes an existing run)")
    t.add_argument("project", help="project folder")
    t.add_argument("--run", default="default", help="run name under PROJECT/xseg (default: default)")
    t.add_argument("--steps", type=int, default=None, help="train this many more steps, then stop")
    t.add_argument("--minutes", type=float, default=None, help="train this many minutes, then stop")
    t.add_argument("--background", action="store_true", help="train in a detached background process and return")
    t.add_argument("--batch-size", type=int, default=None, help="faces per step (default 8)")
    t.add_argument("--device", default=None, help="auto, cpu, cuda, mps (default auto)")
    t.add_argument("--cpu-threads", type=int, default=None,
                   help="CPU threads (0 = time 1 vs all and keep the faster; default 0)")
    t.set_defaults(func=run_train)

    for name, text in (("status", "print the run's status line and last held-out IoU"),
                       ("pause", "pause the background trainer"), ("resume", "resume a paused trainer"),
                       ("stop", "save and stop the trainer"), ("save", "save a checkpoint now"),
                       ("preview", "write a preview now")):
        c = sub.add_parser(name, help=text)
        c.add_argument("project", help="project folder")
        c.add_argument("--run", default="default", help="run name under PROJECT/xseg")
        c.set_defaults(func=run_status if name == "status" else run_command, command=name)

    a = sub.add_parser("apply", help="predict and store the mask in every face of a side (compact PNG in metadata)")
    a.add_argument("project", help="project folder")
    a.add_argument("--run", default="default", help="run name under PROJECT/xseg")
    a.add_argument("--side", choices=tuple(SIDES), default="both", help="which faceset (default both)")
    a.set_defaults(func=run_apply)

    r = sub.add_parser("remove", help="delete applied XSeg masks (and with --labels the drawn polygons)")
    r.add_argument("project", help="project folder")
    r.add_argument("--side", choices=tuple(SIDES), default="both", help="which faceset (default both)")
    r.add_argument("--labels", action="store_true", help="also delete the include/exclude polygons")
    r.set_defaults(func=run_remove)


def _run_dir(args: argparse.Namespace):
    from ..project import Project
    from ..segment.trainer import default_run_dir

    project = Project.open(args.project)
    return project, default_run_dir(project, args.run)


def run_train(args: argparse.Namespace) -> int:
    import dataclasses

    from ..segment.trainer import XSegOptions, read_xseg_config, start_xseg, train_xseg
    from ..train.runs import wait_for_state

    project, run_dir = _run_dir(args)
    options = XSegOptions()
    if (run_dir / "config.json").exists():
        options = read_xseg_config(run_dir)[0]
    changes = {k: v for k, v in (("batch_size", args.batch_size), ("device", args.device),
                                 ("cpu_threads", args.cpu_threads)) if v is not None}
    options = dataclasses.replace(options, **changes)
    seconds = args.minutes * 60 if args.minutes else None
    folders = [project.aligned_dir("src"), project.aligned_dir("dst")]
    if args.background:
        handle = start_xseg(run_dir, options, folders=folders, steps=args.steps, seconds=seconds)
        status = wait_for_state(run_dir, ("running", "error", "stopped", "finished"), timeout=600)
        print(f"XSeg trainer pid {handle.pid}: {status.summary()}")
        print(f"watch: workbench xseg status {args.project} --run {args.run}; stop: workbench xseg stop {args.project}")
        return 0 if status.state != "error" else 2
    result = train_xseg(run_dir, options, folders=folders, steps=args.steps, seconds=seconds, progress=True)
    print(f"XSeg {result.state} at step {result.step}; run folder {run_dir}")
    return 0


def run_status(args: argparse.Namespace) -> int:
    from ..train.runs import read_status

    _, run_dir = _run_dir(args)
    status = read_status(run_dir)
    line = status.summary()
    if status.metrics.get("iou") is not None:
        line += f", held-out IoU {status.metrics['iou']:.3f}"
        if status.metrics.get("hull_iou") is not None:
            line += f" (hull {status.metrics['hull_iou']:.3f})"
    print(line)
    return 0


def run_command(args: argparse.Namespace) -> int:
    from ..errors import TrainingError
    from ..train.runs import read_status, send_command

    _, run_dir = _run_dir(args)
    status = read_status(run_dir)
    if not status.is_active:
        raise TrainingError("no XSeg trainer is running on this run", run_dir,
                            f"start one: workbench xseg train {args.project} --background")
    send_command(run_dir, args.command)
    time.sleep(0.1)
    print(f"sent {args.command} to pid {status.pid}")
    return 0


def run_apply(args: argparse.Namespace) -> int:
    from ..segment.predict import apply_masks

    project, run_dir = _run_dir(args)
    folders = [project.aligned_dir(s) for s in SIDES[args.side]]
    summary = apply_masks(run_dir, folders,
                          progress=lambda done, total: print(f"\rapplied {done}/{total}", end="", flush=True))
    print(f"\nXSeg masks written into {summary.written}/{summary.faces} faces ({summary.faces_per_second:.1f} faces/s)")
    for path, why in summary.broken[:10]:
        print(f"  skipped {path.name}: {why}")
    return 0


def run_remove(args: argparse.Namespace) -> int:
    from ..project import Project
    from ..segment.predict import remove_masks

    project = Project.open(args.project)
    changed = remove_masks([project.aligned_dir(s) for s in SIDES[args.side]], labels=args.labels)
    print(f"removed XSeg {'masks and labels' if args.labels else 'masks'} from {changed} faces")
    return 0
