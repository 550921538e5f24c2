"""`workbench train PROJECT`, `workbench train-status PROJECT`, `workbench train-cmd PROJECT CMD`.

Training runs in the foreground with DFL's progress line, or with ``--background`` as a detached process
that keeps going after the terminal closes; either way the run folder ``PROJECT/models/<run>`` is the interface.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from ..errors import TrainingError

# CLI flag -> option, for every option except the bookkeeping ones that live in config files
_SKIP = {"status_every_seconds"}


def _option_specs() -> list:
    """The training options that get a flag, as :class:`workbench.options.OptionSpec` (``train.options``)."""
    from ..train.options import OPTION_SPECS

    return [spec for name, spec in OPTION_SPECS.items() if name not in _SKIP]


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}") from None
    if not value > 0 or value != value or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train", help="train the face-swap model (foreground, or --background)",
        description="Train a DF/LIAE autoencoder on PROJECT/aligned/src and aligned/dst. The run folder "
        "PROJECT/models/RUN holds config, status.json, metrics.jsonl, previews and checkpoints.",
    )
    p.add_argument("project", help="project folder")
    p.add_argument("--preset", choices=("tiny", "quick", "saehd"), default=None,
                   help="starting options: tiny (demo, CPU), quick (Quick96), saehd (SAEHD defaults); default tiny "
                   "for a new run, the run's own options for --resume")
    p.add_argument("--run", default=None, help="run name under PROJECT/models (default: the preset name)")
    p.add_argument("--steps", type=_positive_int, default=None, help="train this many more steps (>= 1), then stop")
    p.add_argument("--minutes", type=_positive_float, default=None, help="train this many minutes (> 0), then stop")
    p.add_argument("--resume", action="store_true", help="continue an existing run (required if it has a checkpoint)")
    p.add_argument("--background", action="store_true", help="train in a detached background process and return")
    p.add_argument("--src", default=None, help="src faceset folder (default PROJECT/aligned/src)")
    p.add_argument("--dst", default=None, help="dst faceset folder (default PROJECT/aligned/dst)")
    p.add_argument("--pretrained", default=None, help="start a new run from a pretrained run folder or checkpoint")
    p.add_argument("--nproc", type=int, default=1,
                   help="with --background: DDP processes (GPUs) on this machine, launched with torchrun")
    p.add_argument("--prepare-only", action="store_true",
                   help="only write the run's config.json and print the torchrun commands (multi-GPU, multi-node)")
    from ..options import add_arguments

    group = p.add_argument_group("training options (override the preset; generated from TrainOptions' fields)")
    add_arguments(group, _option_specs(), dest_prefix="opt_", bool_values=True)
    p.set_defaults(func=run)

    s = subparsers.add_parser("train-status", help="show the state of training runs",
                              description="Read PROJECT/models/*/status.json (never the logs).")
    s.add_argument("project")
    s.add_argument("--run", default=None, help="only this run")
    s.add_argument("--json", action="store_true", help="print the raw status as JSON")
    s.set_defaults(func=run_status)

    c = subparsers.add_parser("train-cmd", help="send pause/resume/save/preview/stop to a running trainer",
                              description="Drops a command file into PROJECT/models/RUN/commands/.")
    c.add_argument("project")
    c.add_argument("command", choices=("pause", "resume", "save", "preview", "stop"))
    c.add_argument("--run", default=None, help="run name (default: the only/most recent run)")
    c.add_argument("--wait", type=float, default=0.0, help="seconds to wait for the trainer to react")
    c.set_defaults(func=run_command)


def _project_models(folder: str) -> Path:
    from ..project import Project

    return Project.open(folder).models_dir


def _pick_run(models: Path, name: str | None) -> Path:
    from ..train.runs import latest_run, run_folder

    if name:
        run_dir = run_folder(models, name)
        if not run_dir.is_dir():
            raise TrainingError(f"no run named '{name}'", models, "list runs with `workbench train-status PROJECT`")
        return run_dir
    latest = latest_run(models)
    if latest is None:
        raise TrainingError("this project has no training runs yet", models, "start one with `workbench train PROJECT`")
    return latest.run_dir


def run(args: argparse.Namespace) -> int:
    from ..project import Project
    from ..train import prepare_run, preset, read_run_config, start
    from ..train.foreground import run_config
    from ..train.runs import checkpoint_path, run_folder

    project = Project.open(args.project)
    run_name = args.run or args.preset or "tiny"
    run_dir = run_folder(project.models_dir, run_name)  # a plain name, checked before anything is written
    overrides = {k[4:]: v for k, v in vars(args).items() if k.startswith("opt_") and v is not None}
    has_ckpt = checkpoint_path(run_dir).exists()
    if has_ckpt and not args.resume:
        raise TrainingError(f"run '{run_name}' already has a trained model", run_dir,
                            "pass --resume to continue it, or --run NEW_NAME to start another")
    if args.resume and (run_dir / "config.json").exists() and args.preset is None:
        options = read_run_config(run_dir).options.replace(**overrides)
    else:
        options = preset(args.preset or "tiny", **overrides)
    src = project.resolve_inside(args.src) if args.src else project.aligned_dir("src")
    dst = project.resolve_inside(args.dst) if args.dst else project.aligned_dir("dst")
    seconds = args.minutes * 60.0 if args.minutes else None
    if args.nproc > 1 and not args.background:
        raise TrainingError("--nproc needs --background (or launch torchrun yourself; see --prepare-only)")
    if args.prepare_only:
        prepare_run(run_dir, options, src=src, dst=dst, pretrained=args.pretrained, max_steps=args.steps,
                    max_seconds=seconds)
        print(f"wrote {run_dir / 'config.json'}; --batch-size {options.batch_size} is the global batch. Launch with:")
        print(f"  one machine, N GPUs:  torchrun --standalone --nproc_per_node=N -m workbench.train {run_dir}")
        print("  several machines (run folder and facesets on shared storage), on every node:")
        print(f"    torchrun --nnodes=NODES --nproc_per_node=GPUS --rdzv_backend=c10d "
              f"--rdzv_endpoint=HOST:29500 --rdzv_id={run_name} -m workbench.train {run_dir}")
        return 0
    if args.background:
        handle = start(run_dir, options, src=src, dst=dst, pretrained=args.pretrained, max_steps=args.steps,
                       max_seconds=seconds, nproc=args.nproc)
        print(f"training in the background: pid {handle.pid}, run folder {run_dir}")
        print(f"  watch:  workbench train-status {args.project} --run {run_name}")
        print(f"  stop:   workbench train-cmd {args.project} stop --run {run_name}")
        return 0
    config = prepare_run(run_dir, options, src=src, dst=dst, pretrained=args.pretrained, max_steps=args.steps,
                         max_seconds=seconds)
    print(f"training '{run_name}' ({options.archi}, {options.resolution} px, batch {options.batch_size}); "
          f"Ctrl-C saves and stops. Run folder: {run_dir}")
    result = run_config(run_dir, config, progress=True)
    print(f"{result.state} at step {result.step}; checkpoint {checkpoint_path(run_dir)}")
    return 0


def run_status(args: argparse.Namespace) -> int:
    from ..train.runs import list_runs, read_status

    models = _project_models(args.project)
    runs = [read_status(_pick_run(models, args.run))] if args.run else list_runs(models)
    if not runs:
        print("no training runs yet")
        return 0
    for status in runs:
        if args.json:
            data = {k: getattr(status, k) for k in status.__dataclass_fields__}
            data.update(run_dir=str(status.run_dir), losses=dict(status.losses), metrics=dict(status.metrics),
                        collapse_events=list(status.collapse_events), stale=status.stale)
            print(json.dumps(data, default=str))
        else:
            from ..quality import format_identity_curve, identity_curve
            from ..train.runs import read_metrics

            print(status.summary())
            curve = identity_curve(read_metrics(status.run_dir))
            if curve:
                print("  " + format_identity_curve(curve))
    return 0


def run_command(args: argparse.Namespace) -> int:
    from ..train.runs import read_status, send_command

    run_dir = _pick_run(_project_models(args.project), args.run)
    status = read_status(run_dir)
    starting = status.state == "starting" and status.updated is not None and time.time() - status.updated < 120
    if not status.alive and not starting:
        # Nobody would read the file: refuse instead of leaving a command for a trainer that never comes.
        state = "crashed (process gone)" if status.stale else status.state
        raise TrainingError(f"no trainer is running on run '{run_dir.name}' (state: {state}, step {status.step}); "
                            f"'{args.command}' was not sent", run_dir,
                            f"start or resume it with `workbench train {args.project} --run {run_dir.name} --resume`")
    send_command(run_dir, args.command)
    print(f"sent '{args.command}' to {run_dir.name}")
    expected = {"pause": "paused", "resume": "running", "stop": "stopped"}.get(args.command)
    deadline = time.monotonic() + max(args.wait, 0.0)
    while expected and time.monotonic() < deadline:
        status = read_status(run_dir)
        if status.state == expected or not status.alive:
            print(status.summary())
            break
        time.sleep(0.2)
    return 0
