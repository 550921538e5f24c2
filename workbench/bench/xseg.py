"""Benchmark: XSeg training speed, apply speed, and (with a trained run) the occluder IoU on unseen faces.

    python -m workbench.bench xseg [--faces DIR ...] [--steps 20] [--batch-size 8] [--run RUN_DIR --unseen DIR ...]

Training it/s: ``--steps`` steps of the default XSegLite (64 px, reading the landmark hull) on the faces of ``--faces`` (default: the
shared test media's lp_d18 faces, extracted on the fly into a temp folder), hull targets + synthetic
occluders, after 2 warm-up steps. Apply faces/s: ``predict_masks`` + PNG encode + in-place metadata write
on copies of the same faces. With ``--run`` and ``--unseen``: mean IoU vs the visible face of unseen faces
with pasted photo occluders covering 15-35 % of the hull (``workbench.segment.occlusion``), and the hull's:
with the landmarks stored in the face files, and with landmarks found again on the occluded faces.
Prints the CPU model, its SIMD flags, torch threads and the load average beside the numbers.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from ..machine import machine_line


def _default_faces(tmp: Path) -> list[Path]:
    from ..extract import ExtractOptions, extract_faces
    from ..testdata import shared_data_dir

    data = shared_data_dir()
    if data is None:
        raise SystemExit("no --faces given and no shared test media (../shared/data) to extract from")
    out = tmp / "faces"
    extract_faces(data / "videos" / "lp_d18.mp4", out, ExtractOptions(size=256, every_nth=6, workers=0), progress=False)
    return [out]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workbench.bench xseg", description=__doc__.split("\n")[0])
    parser.add_argument("--faces", nargs="*", default=None, help="faceset folders to train / apply on")
    parser.add_argument("--steps", type=int, default=20, help="timed training steps")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = leave torch's default)")
    parser.add_argument("--run", default=None, help="a trained XSeg run folder for the occluder IoU")
    parser.add_argument("--unseen", nargs="*", default=None, help="faceset folders never used in that run's training")
    args = parser.parse_args(argv)

    import numpy as np
    import torch

    from ..segment.data import load_seg_bank
    from ..segment.trainer import XSegOptions, XSegTrainer

    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        folders = [Path(f) for f in args.faces] if args.faces else _default_faces(tmp)
        options = XSegOptions(batch_size=args.batch_size, cpu_threads=torch.get_num_threads(), heldout=0,
                              metrics_every=0, preview_every=0, save_every_seconds=0)
        bank = load_seg_bank(folders, options.resolution)
        trainer = XSegTrainer(options, folders, bank=bank)
        for _ in range(2):
            trainer.train_step()
        t0 = time.perf_counter()
        for _ in range(args.steps):
            trainer.train_step()
        train_s = (time.perf_counter() - t0) / args.steps
        # apply on copies of the faces (the originals stay untouched)
        copies = tmp / "apply"
        copies.mkdir()
        for f in folders:
            for p in sorted(f.iterdir())[:64]:
                if p.suffix.lower() in (".jpg", ".jpeg", ".png"):
                    shutil.copy2(p, copies / f"{f.name}_{p.name}")
        run = tmp / "run"
        (run / "checkpoints").mkdir(parents=True)
        trainer.run_dir = run
        trainer.save()
        from ..segment.predict import apply_masks, load_xseg

        summary = apply_masks(load_xseg(run), [copies])
        print(f"{machine_line()}; torch {torch.__version__}, {torch.get_num_threads()} threads")
        print(f"{'measure':44s} {'value':>10s}")
        label = f"train it/s (batch {args.batch_size}, {options.resolution} px)"
        print(f"{label:44s} {1 / train_s:10.2f}")
        print(f"{'train faces/s':44s} {args.batch_size / train_s:10.1f}")
        label = f"apply faces/s ({summary.faces} faces, predict+encode+write)"
        print(f"{label:44s} {summary.faces_per_second:10.1f}")
    if args.run and args.unseen:
        from ..segment.occlusion import evaluate_occlusion, make_occluder_set
        from ..testdata import shared_data_dir

        data = shared_data_dir()
        if data is None:
            raise SystemExit("the occluder test needs photo textures from the shared test media")
        stills = data / "stills"
        textures = [stills / "edge/dogs.jpg", stills / "obama/obama3.jpg", stills / "biden/biden.jpg",
                    stills / "multi/two_people.jpg"]
        occ = make_occluder_set(args.unseen, textures)
        res = evaluate_occlusion(args.run, occ)
        print(f"occluder test: {res['faces']} unseen faces, mean coverage {res['coverage']:.3f}")
        print(f"{'mean IoU vs visible face, XSeg':44s} {res['xseg_iou']:10.3f}")
        print(f"{'mean IoU vs visible face, landmark hull':44s} {res['hull_iou']:10.3f}")
        print(f"{'gain over hull (target >= 0.10)':44s} {res['gain']:10.3f}")
        print(f"{'target IoU >= 0.85':44s} {'met' if res['xseg_iou'] >= 0.85 else 'missed by %.3f' % (0.85 - res['xseg_iou']):>10s}")
        print(f"landmarks found again on the occluded faces (dlib HOG found {res['redetected_found']} of "
              f"{res['faces']}; the clean box stands in for the rest):")
        print(f"{'  mean IoU vs visible face, XSeg':44s} {res['xseg_iou_redetected']:10.3f}")
        print(f"{'  mean IoU vs visible face, their hull':44s} {res['hull_iou_redetected']:10.3f}")
    return 0 if np.isfinite(train_s) else 1
