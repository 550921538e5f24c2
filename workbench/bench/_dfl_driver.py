"""Time DeepFaceLab's own ``train_one_iter()`` for ``python -m workbench.bench train --dfl PATH``.

This script runs under *DeepFaceLab's* Python (TensorFlow 1-style graph code on TF 2.x), never under the
workbench's, so it imports nothing from ``workbench`` and only the standard library, numpy and DFL's own modules
from the checkout given by ``--dfl``. It contains no DFL code: it drives a user's DFL checkout the way DFL's
trainer does, answering DFL's interactive option prompts from a JSON file instead of a keyboard.

Steps:
1. wrap the harness's synthetic aligned faces (JPEG + 68 landmarks) into a DFL faceset with DFL's own writer,
   ``DFLIMG.DFLJPG`` (face type, landmarks, source file/rect/landmarks, image-to-face matrix);
2. let OpenCV take numpy scalars where DFL passes them (see :data:`OPENCV_CALLS_TAKING_POINTS`);
   build the model (``models.import_model(CLASS)``) on the CPU with the requested options; DFL asks for every
   option through ``core.interact``; those calls are answered with the option's value;
3. speak the harness's line protocol on stdout (lines prefixed ``WBPROTO``; DFL's own log lines are ignored):
   ``ready`` once built, then for every ``{"steps": k}`` read from stdin run k ``train_one_iter()`` calls and
   answer ``timed`` with wall and CPU seconds; ``{"quit": true}`` ends the process.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import time
from pathlib import Path

PROTOCOL_PREFIX = "WBPROTO "


def say(message: dict) -> None:
    sys.stdout.write(PROTOCOL_PREFIX + json.dumps(message) + "\n")
    sys.stdout.flush()


def build_faceset(faces_dir: Path, out_dir: Path, face_type: str) -> int:
    """Copy the harness's JPEGs into ``out_dir`` and write DFL metadata into each with DFLJPG."""
    import numpy as np
    from DFLIMG import DFLJPG

    landmarks = np.load(faces_dir / "landmarks.npy")
    out_dir.mkdir(parents=True, exist_ok=True)
    images = sorted(faces_dir.glob("*.jpg"))
    for path, points in zip(images, landmarks):
        target = out_dir / path.name
        shutil.copyfile(path, target)
        face = DFLJPG.load(str(target))
        if face is None:
            raise SystemExit(f"DFLJPG could not read {target}")
        height, width = face.get_shape()[:2]
        face.set_face_type(face_type)
        face.set_landmarks(points.tolist())
        face.set_source_filename(path.name)
        face.set_source_rect([0, 0, int(width), int(height)])
        face.set_source_landmarks(points.tolist())
        face.set_image_to_face_mat(np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))
        face.save()
    return len(images)


# OpenCV >= 4.5 refuses numpy scalars where it wants a point or size (DFL was written for OpenCV 4.1: e.g.
# ``cv2.getRotationMatrix2D((w // 2, w // 2), ...)`` with numpy ints raises "Can't parse 'center'"). Python 3.11
# has no wheel of an OpenCV that old, so the calls DFL's training path makes get their numbers converted.
OPENCV_CALLS_TAKING_POINTS = ("getRotationMatrix2D", "warpAffine", "resize", "remap", "GaussianBlur", "blur",
                              "circle", "line", "rectangle", "ellipse", "getAffineTransform", "erode", "dilate")


def _python_numbers(value):
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple):
        return tuple(_python_numbers(v) for v in value)
    return value


def accept_numpy_scalars_in_opencv() -> None:
    import functools

    import cv2

    for name in OPENCV_CALLS_TAKING_POINTS:
        original = getattr(cv2, name, None)
        if original is None:
            continue

        @functools.wraps(original)
        def call(*args, _original=original, **kwargs):
            return _original(*(_python_numbers(a) for a in args),
                             **{k: _python_numbers(v) for k, v in kwargs.items()})

        setattr(cv2, name, call)


def answer_prompts_from(options: dict) -> None:
    """Make DFL's option prompts return the requested values (or DFL's default) without a keyboard."""
    from core.interact import interact as io
    from models import ModelBase

    def _default(_prompt, default_value=None, *args, **kwargs):
        return default_value

    for name in ("input_str", "input_int", "input_number", "input_bool"):
        setattr(io, name, _default)
    io.input_in_time = lambda *args, **kwargs: False
    io.input_skip_pending = lambda *args, **kwargs: None

    original = ModelBase.load_or_def_option

    def load_or_def_option(self, name, def_value):
        if name in options:
            return options[name]
        return original(self, name, def_value)

    ModelBase.load_or_def_option = load_or_def_option


def cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dfl", required=True, help="DeepFaceLab checkout (the folder holding main.py)")
    parser.add_argument("--model", required=True, help="DFL model class: SAEHD or Quick96")
    parser.add_argument("--options", required=True, help="JSON object of DFL option values")
    parser.add_argument("--faces", required=True, help="folder with *.jpg and landmarks.npy from the harness")
    parser.add_argument("--workdir", required=True, help="scratch folder for the faceset and the model")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(Path(args.dfl).resolve()))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    options = json.loads(args.options)
    workdir = Path(args.workdir)
    started = time.perf_counter()
    face_type = options.get("face_type", "f")
    face_type_name = {"h": "half_face", "mf": "midfull_face", "f": "full_face", "wf": "whole_face",
                      "head": "head"}[face_type]
    count_src = build_faceset(Path(args.faces), workdir / "data_src" / "aligned", face_type_name)
    count_dst = build_faceset(Path(args.faces), workdir / "data_dst" / "aligned", face_type_name)
    accept_numpy_scalars_in_opencv()
    answer_prompts_from(options)

    from models import import_model

    model_dir = workdir / "model"
    model_dir.mkdir(parents=True, exist_ok=True)
    model = import_model(args.model)(
        is_training=True, saved_models_path=model_dir,
        training_data_src_path=workdir / "data_src" / "aligned",
        training_data_dst_path=workdir / "data_dst" / "aligned",
        force_model_name="wbbench", cpu_only=True, no_preview=True, silent_start=False)
    say({"event": "ready", "name": f"DeepFaceLab {args.model}", "setup_s": time.perf_counter() - started,
         "faces": [count_src, count_dst], "batch_size": model.get_batch_size(),
         "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "")})

    for line in sys.stdin:
        request = json.loads(line)
        if request.get("quit"):
            break
        steps = int(request["steps"])
        cpu0, wall0 = cpu_seconds(), time.perf_counter()
        for _ in range(steps):
            model.train_one_iter()
        say({"event": "timed", "steps": steps, "wall": time.perf_counter() - wall0, "cpu": cpu_seconds() - cpu0})
    sys.stdout.flush()
    # DFL's sample generators are daemon processes that may block on full queues: stop them, then leave without
    # joining them (os._exit skips the interpreter's own join, which could wait forever).
    import multiprocessing

    for child in multiprocessing.active_children():
        child.terminate()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
