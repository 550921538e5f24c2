"""`workbench export-model PROJECT [--run NAME] --format dfm|onnx [--output PATH]`: share a trained model."""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import CONSENT_RULE
from ..errors import ExportError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export-model", help="export a trained model as a DeepFaceLab DFM (DeepFaceLive, FaceFusion) or ONNX file",
        description="Export a training run's latest checkpoint. dfm: DeepFaceLab's contract (input in_face:0 "
        "[1,H,W,3] BGR in [0,1], optional morph_value:0; outputs out_face_mask:0, out_celeb_face:0, "
        "out_celeb_face_mask:0), read by DeepFaceLive, FaceFusion's deep swapper and VisoMaster. onnx: the same "
        "graph with readable names. Both carry metadata (architecture, resolution, face type, step, a synthetic "
        "media note). Default output: PROJECT/output/<run>.<format>. " + CONSENT_RULE,
    )
    p.add_argument("project", help="project folder")
    p.add_argument("--run", help="training run under PROJECT/models (default: the most recently updated one)")
    p.add_argument("--format", dest="fmt", choices=("dfm", "onnx"), default="dfm", help="file format (default dfm)")
    p.add_argument("--output", help="file to write, inside the project (default: output/<run>.<format>)")
    p.add_argument("--no-morph", action="store_true", help="LIAE models: leave out the morph_value input")
    p.add_argument("--overwrite", action="store_true", help="replace an existing file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..export_model import default_output, export_run, load_onnx_predictor
    from ..project import Project
    from .merge import find_run

    project = Project.open(args.project)
    run_dir = find_run(project.models_dir, args.run)
    out = (project.resolve_inside(args.output) if args.output
           else default_output(project.output_dir, run_dir.name, args.fmt))
    if out.exists() and not args.overwrite:
        raise ExportError("the output file exists", out, "pass --overwrite or choose another --output")
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    export_run(run_dir, out, args.fmt, morph=False if args.no_morph else None)
    check = load_onnx_predictor(out)  # proves the file loads in onnxruntime before we say it is done
    info = check.info
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")
    print(f"  run {run_dir.name}: {info.architecture}, {info.resolution} px, face type {info.face_type}, "
          f"step {info.step}, morph input: {'yes' if info.has_morph else 'no'}")
    print(f"  loads in onnxruntime ({check.provider})")
    print(f"  merge with it: workbench merge {project.root} --model {project.relative(out)}")
    return 0
