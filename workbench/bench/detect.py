"""Face detection engines: ``python -m workbench.bench detect [--engines auto dlib haar mtcnn yunet] [--every 10]``.

Per engine, on the shared test media (``../shared/data``):

- stills:    faces found / faces present in the portraits (``two_people.jpg`` counts 2) and false faces on
             ``dogs.jpg`` (must be 0);
- hard:      the portraits turned by 30, 60, 90 and 150 degrees plus the Hamilton clip's profile / small-face
             frames (30, 0, 240): found / present;
- landmarks: dlib's ``examples/faces`` set (9 photos, 43 faces with 68 points; those points were made by dlib's
             own predictor, so they are a consistency reference, not human ground truth): recall (a detection
             whose landmark centre lies within 0.5 eye distances of the reference face's) and NME, the mean
             68-point error over the matched faces divided by the outer-eye-corner distance; ``nme_hog`` is
             the NME over only the faces dlib HOG also finds (the same faces for every engine);
- videos:    per shared video, the share of sampled frames (every ``--every``-th) with a face (target >= 95 %);
- ms/frame:  CPU time (``time.process_time``) per sampled video frame; it does not grow when other processes
             share the cores, unlike wall time.

``--calibrate`` refits each non-HOG engine's box calibration (``BoxCalibration``): every raw detector box that
overlaps a HOG box (IoU > 0.4) on the stills, the landmark set (HOG upsample 1) and the sampled video frames
is a pair; the median offsets and scales are printed as the constants to paste into the engine module.
"""

from __future__ import annotations

import argparse
import os
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from ..machine import describe_machine, machine_line

STILLS = {  # shared-data path -> faces in it
    "stills/obama/obama_small.jpg": 1, "stills/obama/obama1.jpg": 1, "stills/obama/obama2.jpg": 1,
    "stills/biden/biden2.jpg": 1, "stills/lp_d18_person/d19.jpg": 1, "stills/multi/two_people.jpg": 2,
    "stills/alex_lacamoire/alex-lacamoire.png": 1, "stills/alex_lacamoire/img1.jpg": 1,
    "stills/lin_manuel_miranda/lin-manuel-miranda.png": 1,
}
NEGATIVE = "stills/edge/dogs.jpg"
HARD_ROTATIONS = (30, 60, 90, 150)
HARD_PORTRAITS = ("stills/obama/obama_small.jpg", "stills/alex_lacamoire/alex-lacamoire.png")
HAMILTON = "videos/fr_short_hamilton_clip.mp4"
HARD_FRAMES = {30: 1, 0: 1, 240: 1}  # profile pianist, small stage faces, dark audience: at least one face each
VIDEOS = ("lp_d18.mp4", "lp_d19.mp4", "lp_d3.mp4", "lp_d9.mp4", "vr_face1.mp4", "vr_face4.mp4")
DETECT_MAX_SIDE = 640  # as extraction


def imglab_faces(xml_path: Path):
    """(file, box (x0,y0,x1,y1), (68,2) points) for each face of a dlib imglab XML file."""
    for image in ET.parse(xml_path).getroot().iter("image"):
        for box in image.iter("box"):
            left, top, width, height = (int(box.get(k)) for k in ("left", "top", "width", "height"))
            parts = sorted(box.iter("part"), key=lambda p: int(p.get("name")))
            points = np.array([[int(p.get("x")), int(p.get("y"))] for p in parts], dtype=np.float64)
            yield image.get("file"), (left, top, left + width, top + height), points


def landmark_set(data: Path) -> dict[str, list[np.ndarray]]:
    """Photo path -> the reference 68-point sets of its faces (dlib examples/faces, train + test XML)."""
    folder = data / "landmarks" / "dlib_faces"
    out: dict[str, list[np.ndarray]] = {}
    for xml in ("training_with_face_landmarks.xml", "testing_with_face_landmarks.xml"):
        for name, _box, points in imglab_faces(folder / xml):
            out.setdefault(str(folder / name), []).append(points)
    return out


def nme(points: np.ndarray, reference: np.ndarray) -> float:
    """Mean point error over the 68 points / outer-eye-corner distance of the reference."""
    iod = float(np.linalg.norm(reference[36] - reference[45]))
    return float(np.linalg.norm(np.asarray(points, np.float64) - reference, axis=1).mean() / iod)


def match_faces(found: list[np.ndarray], references: list[np.ndarray]) -> list[tuple[int, int]]:
    """Greedy (found index, reference index) pairs whose landmark centres lie within 0.5 eye distances."""
    pairs, used = [], set()
    for r, ref in enumerate(references):
        iod = float(np.linalg.norm(ref[36] - ref[45]))
        best, best_d = None, 0.5 * iod
        for f, pts in enumerate(found):
            d = float(np.linalg.norm(np.asarray(pts, np.float64).mean(0) - ref.mean(0)))
            if f not in used and d < best_d:
                best, best_d = f, d
        if best is not None:
            used.add(best)
            pairs.append((best, r))
    return pairs


def sampled_frames(path: Path, every: int) -> list[np.ndarray]:
    from workbench.images import to_float
    from workbench.video import iter_frames

    return [to_float(f.image) for f in iter_frames(path, step=every)]


def hard_cases(data: Path) -> list[tuple[str, np.ndarray, int]]:
    """(label, image, faces present): turned portraits and the Hamilton clip's hard frames."""
    from workbench.detect import as_dlib_image, rotate_by_angle
    from workbench.images import read_image, to_float
    from workbench.video import read_frame

    cases = []
    for rel in HARD_PORTRAITS:
        image = as_dlib_image(read_image(data / rel))
        for angle in HARD_ROTATIONS:
            cases.append((f"{Path(rel).stem} {angle} deg", to_float(rotate_by_angle(image, angle)[0]), 1))
    for index, count in HARD_FRAMES.items():
        cases.append((f"hamilton frame {index}", read_frame(data / HAMILTON, index).image, count))
    return cases


def evaluate(engine_name: str, data: Path, every: int) -> dict[str, float]:
    from workbench.detect import detect_faces, load_engine
    from workbench.images import read_image

    engine = load_engine(engine_name)
    row: dict[str, float] = {}
    found = present = 0
    for rel, count in STILLS.items():
        present += count
        found += min(count, len(detect_faces(read_image(data / rel), engine, detect_max_side=DETECT_MAX_SIDE)))
    row["stills"] = found / present
    row["dogs"] = len(detect_faces(read_image(data / NEGATIVE), engine, detect_max_side=DETECT_MAX_SIDE))
    found = present = 0
    for _label, image, count in hard_cases(data):
        present += count
        found += min(count, len(detect_faces(image, engine, detect_max_side=DETECT_MAX_SIDE)))
    row["hard"] = found / present
    errors, common, total = [], [], 0
    for path, references in landmark_set(data).items():
        image = read_image(path)
        faces = detect_faces(image, engine, min_size=20)
        hog = detect_faces(image, "dlib", min_size=20)
        hog_found = {r for _, r in match_faces([x.landmarks for x in hog], references)}
        total += len(references)
        for f, r in match_faces([x.landmarks for x in faces], references):
            errors.append(nme(faces[f].landmarks, references[r]))
            if r in hog_found:
                common.append(errors[-1])
    row["lm_recall"] = len(errors) / total
    row["nme"] = float(np.mean(errors)) if errors else float("nan")
    row["nme_hog"] = float(np.mean(common)) if common else float("nan")
    cpu = frames = 0.0
    for name in VIDEOS:
        images = sampled_frames(data / "videos" / name, every)
        start = time.process_time()
        hits = sum(bool(detect_faces(im, engine, detect_max_side=DETECT_MAX_SIDE)) for im in images)
        cpu += time.process_time() - start
        frames += len(images)
        row[name] = hits / max(len(images), 1)
    row["ms"] = 1000 * cpu / max(frames, 1)
    return row


def calibrate(engine_name: str, data: Path, every: int) -> tuple[object, int]:
    """Fit ``BoxCalibration`` for one engine against HOG boxes; returns (calibration, pairs used)."""
    from workbench.detect import box_iou, fit_box_calibration, load_engine
    from workbench.images import read_image

    engine = load_engine(engine_name)
    hog0, hog1 = load_engine("dlib"), load_engine("dlib", upsample=1)
    images = [(read_image(data / rel), hog0) for rel in STILLS]
    images += [(read_image(p), hog1) for p in landmark_set(data)]
    for name in VIDEOS:
        images += [(im, hog0) for im in sampled_frames(data / "videos" / name, every * 3)]
    det_boxes, hog_boxes = [], []
    for image, hog in images:
        ref = [b for b, _ in hog.detect(image)]
        for box, _score in engine.detect(image):
            ious = [box_iou(box, r) for r in ref]
            if ious and max(ious) > 0.4:
                det_boxes.append(box)
                hog_boxes.append(ref[int(np.argmax(ious))])
    return fit_box_calibration(np.array(det_boxes), np.array(hog_boxes)), len(det_boxes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workbench.bench detect", description=__doc__.splitlines()[0])
    parser.add_argument("--engines", nargs="+", default=["auto", "dlib", "haar", "mtcnn", "yunet"])
    parser.add_argument("--every", type=int, default=10, help="sample every n-th video frame (default 10)")
    parser.add_argument("--calibrate", action="store_true", help="refit the box calibrations and print them")
    args = parser.parse_args(argv)
    from workbench.errors import WorkbenchError
    from workbench.testdata import shared_data_dir

    data = shared_data_dir()
    if data is None:
        print("the shared test media (../shared/data or $WORKBENCH_TEST_DATA) are not present")
        return 1
    print(f"detect benchmark on {data}\n{machine_line(describe_machine(cuda=False))}")
    if args.calibrate:
        for name in [e for e in args.engines if e in ("haar", "mtcnn", "yunet")]:
            calibration, pairs = calibrate(name, data, args.every)
            print(f"{name:6s} {pairs:4d} box pairs -> calibration = {calibration!r}")
        return 0
    columns = ["stills", "dogs", "hard", "lm_recall", "nme", "nme_hog", *VIDEOS, "ms"]
    print(f"{'engine':8s} " + " ".join(f"{c.replace('.mp4', ''):>9s}" for c in columns))
    for name in args.engines:
        try:
            row = evaluate(name, data, args.every)
        except WorkbenchError as exc:
            print(f"{name:8s} unavailable: {exc}")
            continue
        cells = []
        for c in columns:
            v = row[c]
            cells.append(f"{int(v):9d}" if c == "dogs" else f"{v:9.1f}" if c == "ms" else
                         f"{v:9.3f}" if c.startswith("nme") else f"{v:9.0%}")
        print(f"{name:8s} " + " ".join(cells))
    print("stills/hard/lm_recall/videos: share of faces (frames) found; dogs: false faces (target 0); nme: 68-point "
          f"error / eye distance on matched faces (nme_hog: only the faces dlib HOG also finds); ms: CPU ms per video frame (detect_max_side {DETECT_MAX_SIDE}). "
          f"Load average at the end: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
