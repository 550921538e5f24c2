"""`workbench merge PROJECT [--run NAME] [--mode ...] [--color ...] [...] [--overwrite]`: merge every frame."""

from __future__ import annotations

import argparse
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
    changes = {field: getattr(args, flag) for flag, field in _SETTING_FLAGS.items() if getattr(args, flag) is not None}
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
