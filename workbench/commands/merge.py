"""`workbench merge PROJECT [--run NAME] [--mode ...] [--color ...] [...] [--overwrite]`: merge every frame."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from .. import CONSENT_RULE
from ..errors import MergeError

# flag -> MergeSettings field
_SETTING_FLAGS: dict[str, str] = {
    "mode": "mode",
    "mask_mode": "mask_mode",
    "color": "color_transfer",
    "erode": "erode",
    "blur": "blur",
    "motion_blur": "motion_blur",
    "face_scale": "output_face_scale",
    "hist_threshold": "hist_match_threshold",
    "masked_hist_match": "masked_hist_match",
    "sharpen_mode": "sharpen_mode",
    "blursharpen": "blursharpen_amount",
    "denoise": "image_denoise_power",
    "bicubic_degrade": "bicubic_degrade_power",
    "color_degrade": "color_degrade_power",
}


def _help(field: str) -> str:
    """FIELD_HELP text made safe for argparse, which treats '%' as a format character."""
    from ..merge import FIELD_HELP

    return FIELD_HELP[field].replace("%", "%%")


def register(subparsers: argparse._SubParsersAction) -> None:
    from ..merge import MASK_MODES, MODES, SHARPEN_MODES

    p = subparsers.add_parser(
        "merge", help="paste the trained swap into every destination frame",
        description="Merge the swapped face into every destination frame (PROJECT/merged, masks in merged/masks). "
        "Settings start from PROJECT/merge.json (default + per-frame-range overrides) or DFL's defaults; the flags "
        "below change the default. Already merged frames are skipped unless their settings changed. " + CONSENT_RULE,
    )
    p.add_argument("project", help="project folder")
    p.add_argument("--run", help="training run under PROJECT/models (default: the most recently updated one)")
    p.add_argument("--model", metavar="FILE.dfm",
                   help="merge with an exported DFM/ONNX file inside the project (ours or any following DeepFaceLab's "
                   "DFM contract) instead of a training run; runs in onnxruntime (CUDA when available)")
    p.add_argument("--morph", type=float, default=1.0,
                   help="with --model: morph_value for models that have it (1 = full swap, 0 = the dst face)")
    p.add_argument("--device", default="cpu", help="torch device for the model (default cpu)")
    p.add_argument("--mode", choices=MODES, help=_help("mode"))
    p.add_argument("--mask-mode", choices=MASK_MODES, help=_help("mask_mode"))
    p.add_argument("--color", help=_help("color_transfer"))
    p.add_argument("--erode", type=int, help=_help("erode"))
    p.add_argument("--blur", type=int, help=_help("blur"))
    p.add_argument("--motion-blur", type=int, help=_help("motion_blur"))
    p.add_argument("--face-scale", type=int, help=_help("output_face_scale"))
    p.add_argument("--hist-threshold", type=int, help=_help("hist_match_threshold"))
    p.add_argument("--masked-hist-match", action=argparse.BooleanOptionalAction, default=None,
                   help=_help("masked_hist_match"))
    p.add_argument("--sharpen-mode", choices=SHARPEN_MODES, help=_help("sharpen_mode"))
    p.add_argument("--blursharpen", type=int, help=_help("blursharpen_amount"))
    p.add_argument("--denoise", type=int, help=_help("image_denoise_power"))
    p.add_argument("--bicubic-degrade", type=int, help=_help("bicubic_degrade_power"))
    p.add_argument("--color-degrade", type=int, help=_help("color_degrade_power"))
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
    """The run folder to merge with: ``name``, or the most recently updated run in ``models_dir``."""
    from ..train.runs import run_folder

    if name:
        run_dir = run_folder(models_dir, name)  # a plain name, checked before anything is read or written
        if not run_dir.is_dir():
            known = sorted(d.name for d in models_dir.iterdir() if d.is_dir()) if models_dir.is_dir() else []
            raise MergeError(f"no training run named '{name}'", run_dir,
                             f"available runs: {', '.join(known)}" if known else "train a model first: workbench train")
        return run_dir
    runs = [d for d in models_dir.iterdir() if d.is_dir()] if models_dir.is_dir() else []
    if not runs:
        raise MergeError("no trained model in this project", models_dir,
                         f"train one first: workbench train {models_dir.parent}")

    def updated(d: Path) -> float:
        return max((f.stat().st_mtime for f in d.rglob("*") if f.is_file()), default=d.stat().st_mtime)

    return max(runs, key=updated)


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
    changes = {field: getattr(args, flag) for flag, field in _SETTING_FLAGS.items() if getattr(args, flag) is not None}
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
