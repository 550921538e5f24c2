"""`workbench merge PROJECT [--run NAME] [--mode ...] [--color ...] [...] [--overwrite]`: merge every frame."""

from __future__ import annotations

import argparse
import dataclasses
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
    p.add_argument("--model", metavar="FILE.dfm",
                   help="merge with an exported DFM/ONNX file inside the project (ours or any following DeepFaceLab's "
                   "DFM contract) instead of a training run; runs in onnxruntime (CUDA when available)")
    p.add_argument("--morph", type=float, default=1.0,
                   help="with --model: morph_value for models that have it (1 = full swap, 0 = the dst face)")
    p.add_argument("--device", default="cpu", help="torch device for the model (default cpu)")
    add_arguments(p, _setting_specs(), dest_prefix="set_")
    p.add_argument("--smooth", type=float, help="temporal landmark smoothing strength 0..1 (0 = off)")
    p.add_argument("--flow-stabilize", type=float,
                   help="dense optical-flow stabilisation of the merged face 0..1 (0 = off; less flicker)")
    p.add_argument("--xseg-run", default="default",
                   help="XSeg run under PROJECT/xseg used by the xseg-* mask modes (default: default)")
    p.add_argument("--workers", type=int, default=2, help="compositing threads (default 2)")
    p.add_argument("--batch-size", type=int, default=8, help="faces per model call (default 8)")
    p.add_argument("--overwrite", action="store_true", help="merge every frame again, even those already merged")
    p.add_argument("--save", action="store_true", help="store the resulting settings in PROJECT/merge.json")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def find_run(models_dir: Path, name: str | None) -> Path:
    """The run folder to merge with: ``name``, or :func:`workbench.train.runs.latest_run` with a checkpoint."""
    from ..train.runs import latest_run, run_folder

    if name:
        run_dir = run_folder(models_dir, name)  # a plain name, checked before anything is read or written
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
        config = dataclasses.replace(config, default=config.default.replace(**changes))
    if args.smooth is not None:
        config = dataclasses.replace(config, temporal_smoothing=args.smooth)
    if args.flow_stabilize is not None:
        config = dataclasses.replace(config, flow_stabilization=args.flow_stabilize)

    if args.model:
        from ..export_model import load_onnx_predictor

        if args.run:
            raise MergeError("--run and --model both name a model", args.model, "give only one of them")
        predictor = load_onnx_predictor(project.resolve_inside(args.model), morph=args.morph)
        name = Path(args.model).name
        if predictor.face_type is None:  # a DFM made elsewhere: no metadata
            print(f"note: {name} does not say its face type; using the merge settings' "
                  f"'{config.default.face_type}' (change it in merge.json; DFL models are mostly whole_face)")
    else:
        run_dir = find_run(project.models_dir, args.run)
        predictor = load_predictor(run_dir, args.device)
        name = run_dir.name
    print(f"model: {name} (resolution {getattr(predictor, 'resolution', '?')}, "
          f"face type {getattr(predictor, 'face_type', '?')})")
    config = adapt_to_predictor(config, predictor)
    segment = None
    if any(config.settings_for(o.start).needs_segmenter for o in config.overrides) or config.default.needs_segmenter:
        from ..segment.predict import project_segmenter

        segment = project_segmenter(project, args.xseg_run, device=args.device)
        print(f"xseg: {segment.source.parent.parent.name} (step {segment.step})")
    summary = merge_project(project, predictor, config, workers=args.workers, progress=not args.no_progress,
                            resume=not args.overwrite, batch_size=args.batch_size, segment=segment)
    print(summary.format())
    if args.save:
        config.save(path)
        print(f"settings saved: {path}")
    print(f"next: workbench export {project.root}")
    return 0
