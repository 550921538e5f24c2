"""`workbench merge PROJECT [--run NAME] [--mode ...] [--color ...] [...] [--overwrite]`: merge every frame."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .. import CONSENT_RULE
from ..errors import MergeError

# the settings the CLI does not offer: model facts (set from the predictor) and a model this CLI does not load
_NOT_FLAGS = ("face_type", "resolution", "super_resolution_power")


def _setting_specs() -> list:
    """The merge settings' flags, generated from ``MergeSettings``' field descriptions."""
    from ..merge.settings import SETTING_SPECS

    return [spec for name, spec in SETTING_SPECS.items() if name not in _NOT_FLAGS]


def register(subparsers: argparse._SubParsersAction) -> None:
    from ..options import add_arguments

    p = subparsers.add_parser(
        "merge", help="paste the trained swap into every destination frame",
        description="Merge the swapped face into every destination frame (PROJECT/merged, masks in merged/masks). "
        "Settings start from PROJECT/merge.json (default + per-frame-range overrides) or DFL's defaults; the flags "
        "below change the default. Already merged frames are skipped unless their settings changed. " + CONSENT_RULE,
    )
    p.add_argument("project", help="project folder")
    p.add_argument("--run", help="training run under PROJECT/models (default: the run with a model that was active last)")
    p.add_argument("--device", default="cpu", help="torch device for the model (default cpu)")
    add_arguments(p, _setting_specs(), dest_prefix="set_")
    p.add_argument("--smooth", type=float, help="temporal landmark smoothing strength 0..1 (0 = off)")
    p.add_argument("--workers", type=int, default=2, help="compositing threads (default 2)")
    p.add_argument("--batch-size", type=int, default=8, help="faces per model call (default 8)")
    p.add_argument("--overwrite", action="store_true", help="merge every frame again, even those already merged")
    p.add_argument("--save", action="store_true", help="store the resulting settings in PROJECT/merge.json")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def find_run(models_dir: Path, name: str | None) -> Path:
    """The run folder to merge with: ``name``, or :func:`workbench.train.runs.latest_run` with a checkpoint."""
    from ..train.runs import latest_run

    if name:
        run_dir = models_dir / name
        if not run_dir.is_dir():
            known = sorted(d.name for d in models_dir.iterdir() if d.is_dir()) if models_dir.is_dir() else []
            raise MergeError(f"no training run named '{name}'", run_dir,
                             f"available runs: {', '.join(known)}" if known else "train a model first: workbench train")
        return run_dir
    latest = latest_run(models_dir, require_checkpoint=True)
    if latest is None:
        raise MergeError("no trained model in this project", models_dir,
                         f"train one first: workbench train {models_dir.parent}")
    return latest.run_dir


def load_predictor(run_dir: Path, device: str) -> Any:
    """The run's latest checkpoint as a merge Predictor (``workbench.train.load_predictor``)."""
    from ..train import load_predictor as loader

    return loader(run_dir, device=device)


def run(args: argparse.Namespace) -> int:
    from ..merge import MergeConfig, adapt_to_predictor, merge_project
    from ..project import Project

    project = Project.open(args.project)
    path = project.merge_settings_path
    config = MergeConfig.load(path) if path.is_file() else MergeConfig()
    changes = {spec.name: getattr(args, f"set_{spec.name}") for spec in _setting_specs()
               if getattr(args, f"set_{spec.name}") is not None}
    if changes:
        config = MergeConfig(config.default.replace(**changes), config.overrides, config.temporal_smoothing)
    if args.smooth is not None:
        config = MergeConfig(config.default, config.overrides, args.smooth)

    run_dir = find_run(project.models_dir, args.run)
    predictor = load_predictor(run_dir, args.device)
    print(f"model: {run_dir.name} (resolution {getattr(predictor, 'resolution', '?')}, "
          f"face type {getattr(predictor, 'face_type', '?')})")
    config = adapt_to_predictor(config, predictor)
    summary = merge_project(project, predictor, config, workers=args.workers, progress=not args.no_progress,
                            resume=not args.overwrite, batch_size=args.batch_size)
    print(summary.format())
    if args.save:
        config.save(path)
        print(f"settings saved: {path}")
    print(f"next: workbench export {project.root}")
    return 0
