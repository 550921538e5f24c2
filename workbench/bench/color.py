"""Benchmark: milliseconds per colour transfer at a few face sizes.

    python -m workbench.bench color [--sizes 128 256] [--repeat 5] [--stat min] [--masked] [--only rct lct]

Inputs are synthetic smooth "faces" (so no test media are needed); the time of a transfer depends on the
pixel count, not on the content. Prints the median (or ``--stat min``) of ``--repeat`` runs after one
warm-up call.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from ..color import TRANSFERS, apply_transfer

SEEDED = frozenset({"idt", "sot", "mix"})


def _synthetic_face(size: int, rng: np.random.Generator) -> np.ndarray:
    """A smooth (size, size, 3) float32 RGB image in [0, 1] with random colour gradients and noise."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / max(size - 1, 1)
    base = rng.uniform(0.2, 0.8, size=3).astype(np.float32)
    grad = rng.uniform(-0.2, 0.2, size=(2, 3)).astype(np.float32)
    img = base + xx[..., None] * grad[0] + yy[..., None] * grad[1]
    img += rng.normal(0, 0.03, size=img.shape).astype(np.float32)
    return np.clip(img, 0, 1).astype(np.float32)


def _ellipse_mask(size: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    c = (size - 1) / 2
    inside = ((xx - c) / (0.38 * size)) ** 2 + ((yy - c) / (0.46 * size)) ** 2 <= 1
    return inside.astype(np.float32)


def time_transfer(
    name: str, face: np.ndarray, ref: np.ndarray, mask: np.ndarray | None, repeat: int, stat: str = "median"
) -> float:
    """Wall time in ms (median or min over ``repeat`` runs) of ``apply_transfer(name, face, ref, mask)``."""
    options = {"seed": 0} if name in SEEDED else {}
    apply_transfer(name, face, ref, mask, **options)  # warm-up (imports, OpenCV tables)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        apply_transfer(name, face, ref, mask, **options)
        times.append((time.perf_counter() - t0) * 1e3)
    return float(np.min(times) if stat == "min" else np.median(times))


def main(argv: list[str] | None = None) -> int:
    """Print a table of ms per transfer (rows) and face size (columns). Returns 0."""
    parser = argparse.ArgumentParser(
        prog="python -m workbench.bench color", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256], help="face sizes in px")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per cell (median reported)")
    parser.add_argument(
        "--stat", choices=["median", "min"], default="median", help="min is steadier on a busy machine"
    )
    parser.add_argument("--masked", action="store_true", help="also time with an elliptical face mask")
    parser.add_argument("--only", nargs="+", choices=list(TRANSFERS), help="transfers to time")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    names = args.only or list(TRANSFERS)
    variants = [False, True] if args.masked else [False]
    print(f"ms per call, {args.stat} of {args.repeat} runs")
    header = f"{'transfer':<16}" + "".join(f"{f'{s} px':>12}" for s in args.sizes)
    print(header)
    print("-" * len(header))
    inputs = {s: (_synthetic_face(s, rng), _synthetic_face(s, rng), _ellipse_mask(s)) for s in args.sizes}
    for name in names:
        for masked in variants:
            label = name + (" +mask" if masked else "")
            cells = []
            for s in args.sizes:
                face, ref, mask = inputs[s]
                ms = time_transfer(name, face, ref, mask if masked else None, args.repeat, args.stat)
                cells.append(f"{ms:>9.1f} ms")
            print(f"{label:<16}" + "".join(cells))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
