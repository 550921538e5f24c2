"""Share a trained model: export it as a DeepFaceLab DFM or a plain ONNX file, and run such files with onnxruntime.

**DFM contract** (what DeepFaceLive's ``DFMModel``, FaceFusion's deep swapper and VisoMaster read):

- an ONNX file; first input ``in_face:0``, ``[N, H, W, 3]`` (N = 1 in practice) float32, **BGR**, in [0, 1];
- optional second input ``morph_value:0``, ``[1]`` float32 (exported for LIAE models: the swap code is
  ``m·[AB, AB] + (1 - m)·[B, AB]``, so 1 is the full swap and 0 the destination's own reconstruction);
- three outputs **in this order**: ``out_face_mask:0`` ``[N, H, W, 1]`` (the destination face's mask),
  ``out_celeb_face:0`` ``[N, H, W, 3]`` BGR (the swapped face), ``out_celeb_face_mask:0`` ``[N, H, W, 1]``.

Our models work in NCHW RGB; :class:`DFMGraph` wraps the layout and channel order inside the graph, so the file
needs no pre- or post-processing beyond what the contract says. The legacy TorchScript exporter is used
(``dynamo=False``): the torch.export-based one needs ``onnxscript``, which is not a dependency. Opset 13 with a
dynamic batch axis loads in onnxruntime on CPU and CUDA (DFL's own export is opset 12).

``--format onnx`` writes the same graph with readable names (``face_bgr``, ``morph``, ``dst_mask``,
``swapped_face_bgr``, ``swapped_mask``). Both formats carry metadata props (architecture, resolution, face type,
training step, a provenance note that outputs are synthetic); DeepFaceLive ignores them.

:class:`OnnxPredictor` runs such a file with the merger's predictor interface (``predict(face)`` and ``batch``,
RGB float faces), by input/output position, so DFM files made elsewhere work too: without metadata the
resolution comes from the input shape and the face type is unknown (the merge settings' face type is used).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .errors import ExportError

FORMATS: tuple[str, ...] = ("dfm", "onnx")
OPSET = 13
PROVENANCE_NOTE = ("synthetic media: every output of this model is a generated face (a face swap), not a real "
                   "recording; label anything made with it as synthetic")

DFM_NAMES: dict[str, str] = {
    "face": "in_face:0", "morph": "morph_value:0",
    "dst_mask": "out_face_mask:0", "swapped": "out_celeb_face:0", "swapped_mask": "out_celeb_face_mask:0",
}
ONNX_NAMES: dict[str, str] = {
    "face": "face_bgr", "morph": "morph",
    "dst_mask": "dst_mask", "swapped": "swapped_face_bgr", "swapped_mask": "swapped_mask",
}
NAMES: dict[str, dict[str, str]] = {"dfm": DFM_NAMES, "onnx": ONNX_NAMES}


@dataclass(frozen=True)
class ModelInfo:
    """What an exported file says about its model (empty fields for a DFM made elsewhere)."""

    resolution: int
    face_type: str | None = None
    architecture: str | None = None
    step: int | None = None
    has_morph: bool = False
    metadata: dict[str, str] | None = None


def _torch_wrapper(model: Any, morph: bool) -> Any:
    """An ``nn.Module`` mapping DFM inputs to DFM outputs around one of our models (built lazily: torch)."""
    import torch
    from torch import nn

    class DFMGraph(nn.Module):
        """NHWC BGR in, (dst mask, swapped BGR, swapped mask) NHWC out; optional morph for LIAE."""

        def __init__(self) -> None:
            super().__init__()
            self.model = model
            self.morph = morph

        def _swap(self, x: torch.Tensor, morph_value: torch.Tensor | None):
            m = self.model
            if morph_value is None:
                return m.swap_with_dst_mask(x)
            # LIAE: one encoder pass; the morph blends the swap code [AB, AB] with the dst code [B, AB]
            feats = m.encoder(x)
            ab = m.inter_AB(feats)
            b = m.inter_B(feats)
            swap_code = torch.cat([ab, ab], 1)
            dst_code = torch.cat([b, ab], 1)
            t = morph_value.reshape(1, 1, 1, 1).to(x.dtype)
            image, mask = m.decoder(t * swap_code + (1 - t) * dst_code)
            return image, mask, m.decoder.mask(dst_code)

        def forward(self, face_bgr: torch.Tensor, morph_value: torch.Tensor | None = None):
            x = face_bgr.permute(0, 3, 1, 2).flip(1)  # NHWC BGR -> NCHW RGB
            image, mask, dst_mask = self._swap(x, morph_value)
            return _nhwc(dst_mask), _nhwc(image.flip(1)), _nhwc(mask)

    def _nhwc(t: torch.Tensor) -> torch.Tensor:
        return t.clamp(0, 1).permute(0, 2, 3, 1)

    return DFMGraph().eval()


def supports_morph(model: Any) -> bool:
    """LIAE models morph between the swap and the destination's own code; DF models have one code for both."""
    return all(hasattr(model, n) for n in ("inter_AB", "inter_B", "decoder"))


def export_model_file(model: Any, config: Any, output: str | Path, fmt: str = "dfm", *, step: int | None = None,
                      morph: bool | None = None, extra_metadata: dict[str, str] | None = None) -> Path:
    """Export a model (DF or LIAE, from :func:`workbench.train.load_model`) to a DFM or ONNX file, atomically.

    Args:
        model: the ``nn.Module`` (moved to CPU fp32 for the export).
        config: its :class:`workbench.models.ModelConfig`.
        output: the file to write (replaced atomically).
        fmt: "dfm" (DeepFaceLab names) or "onnx" (readable names).
        step: training step, recorded in the metadata.
        morph: add the morph input; None = where the architecture supports it (LIAE).
        extra_metadata: more metadata props (strings).

    Raises:
        ExportError: unknown format, morph asked of a DF model, or the exporter failed.
    """
    import io
    import warnings

    import onnx
    import torch

    from .fileutil import atomic_write_bytes

    if fmt not in FORMATS:
        raise ExportError(f"unknown model format '{fmt}'", output, f"use one of {', '.join(FORMATS)}")
    can_morph = supports_morph(model)
    if morph and not can_morph:
        raise ExportError("this architecture has no morph (only LIAE models blend src and dst codes)", output,
                          "export without --morph")
    morph = can_morph if morph is None else morph
    names = NAMES[fmt]
    res = int(config.resolution)
    model = model.to("cpu").float().eval()
    wrapper = _torch_wrapper(model, morph)
    face = torch.rand(1, res, res, 3)
    args: tuple = (face, torch.ones(1)) if morph else (face,)
    inputs = [names["face"]] + ([names["morph"]] if morph else [])
    outputs = [names["dst_mask"], names["swapped"], names["swapped_mask"]]
    dynamic = {n: {0: "batch"} for n in [names["face"], *outputs]}
    buf = io.BytesIO()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice
            torch.onnx.export(wrapper, args, buf, dynamo=False, opset_version=OPSET, input_names=inputs,
                              output_names=outputs, dynamic_axes=dynamic, do_constant_folding=True)
    except Exception as exc:  # the exporter raises many types; name it for the user
        raise ExportError(f"ONNX export failed ({exc.__class__.__name__}: {str(exc).splitlines()[0][:200]})",
                          output) from exc
    proto = onnx.load_from_string(buf.getvalue())
    meta = {
        "workbench_format": fmt, "workbench_version": __version__, "architecture": config.archi_string,
        "resolution": str(res), "face_type": str(config.face_type), "step": "" if step is None else str(int(step)),
        "channel_order": "BGR", "layout": "NHWC", "morph": "yes" if morph else "no",
        "model_config": json.dumps(config.to_dict()),
        "synthetic_media": "true", "provenance": PROVENANCE_NOTE,
    }
    meta.update(extra_metadata or {})
    del proto.metadata_props[:]
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name, proto.producer_version = "face-swap-workbench", __version__
    proto.doc_string = PROVENANCE_NOTE
    onnx.checker.check_model(proto)
    return atomic_write_bytes(output, proto.SerializeToString())


def export_run(run_dir: str | Path, output: str | Path, fmt: str = "dfm", morph: bool | None = None) -> Path:
    """Export a training run's latest checkpoint (see :func:`export_model_file`).

    Raises:
        TrainingError: the run has no readable checkpoint.
        ExportError: as :func:`export_model_file`.
    """
    from .train.checkpoint import load_checkpoint
    from .train.latent import load_model

    if fmt not in FORMATS:
        raise ExportError(f"unknown model format '{fmt}'", output, f"use one of {', '.join(FORMATS)}")
    ckpt = load_checkpoint(run_dir, map_location="cpu")
    model, config = load_model(run_dir, "cpu")
    return export_model_file(model, config, output, fmt, step=int(ckpt.get("step", 0)), morph=morph,
                             extra_metadata={"run": Path(run_dir).name})


# ----------------------------------------------------------------------------------------------------------
# onnxruntime inference


def providers() -> list[str]:
    """onnxruntime execution providers to use: CUDA first when this onnxruntime build has it, then CPU."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]


def _session(path: Path, threads: int | None) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=providers())
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/... types
        raise ExportError(f"onnxruntime cannot load this model ({str(exc).splitlines()[0][:200]})", path,
                          "use a DFM/ONNX file exported by workbench export-model or DeepFaceLab") from exc


def read_model_info(session: Any, path: Path) -> ModelInfo:
    """Check a session against the DFM contract (by position) and read what it says about its model.

    Raises:
        ExportError: inputs/outputs do not follow the contract.
    """
    inputs, outputs = session.get_inputs(), session.get_outputs()
    hint = "a DFM has input in_face [N,H,W,3] (+ optional morph_value [1]) and 3 outputs: mask, face, face mask"
    if not 1 <= len(inputs) <= 2 or len(outputs) != 3:
        raise ExportError(f"not a DFM-style model ({len(inputs)} inputs, {len(outputs)} outputs)", path, hint)
    shape = inputs[0].shape
    if len(shape) != 4 or shape[3] != 3 or not isinstance(shape[1], int) or shape[1] != shape[2]:
        raise ExportError(f"face input has shape {shape}, expected [N, H, H, 3] with a fixed H", path, hint)
    meta = dict(session.get_modelmeta().custom_metadata_map or {})
    step = meta.get("step", "")
    return ModelInfo(resolution=int(shape[1]), face_type=meta.get("face_type") or None,
                     architecture=meta.get("architecture") or None, step=int(step) if step.isdigit() else None,
                     has_morph=len(inputs) == 2, metadata=meta)


class OnnxPredictor:
    """The merger's predictor on an exported DFM/ONNX file: ``predict(face) -> (swapped, swapped_mask, dst_mask)``.

    Faces are RGB float (R, R, 3) in [0, 1] (other sizes are resized), like
    :class:`workbench.train.latent.Predictor`; the BGR order of the file is handled here. ``morph`` (0..1) feeds
    ``morph_value`` when the model has it (1 = full swap, DeepFaceLive's default is 0.75 for AMP models).
    """

    def __init__(self, path: str | Path, threads: int | None = None, morph: float = 1.0):
        self.path = Path(path)
        if not self.path.is_file():
            raise ExportError("model file not found", self.path, "export one with: workbench export-model PROJECT")
        self.session = _session(self.path, threads)
        self.info = read_model_info(self.session, self.path)
        self.resolution = self.info.resolution
        self.face_type = self.info.face_type
        self.morph = float(morph)
        self._inputs = [i.name for i in self.session.get_inputs()]
        batch_dim = self.session.get_inputs()[0].shape[0]
        self._fixed_batch = batch_dim if isinstance(batch_dim, int) else None
        # What made the merged frames, recorded by the merger and named by export's provenance (as a run's
        # predictor records {"run", "step"}); the file name only: the project may move.
        self.provenance: dict[str, Any] = {"model_file": self.path.name, "architecture": self.info.architecture,
                                           "step": self.info.step, "run": None}
        if self.info.metadata and self.info.metadata.get("run"):
            self.provenance["exported_from"] = self.info.metadata["run"]

    def describe(self) -> str:
        """One line for the page: file, backend, resolution, face type and where it came from."""
        info = self.info
        origin = (f"exported from run {info.metadata['run']} at step {info.step}"
                  if info.metadata and info.metadata.get("run") else "made elsewhere (no workbench metadata)")
        face = info.face_type or "face type not recorded (the merge settings' face type is used)"
        return (f"{self.path.name}: onnxruntime {self.provider.replace('ExecutionProvider', '')}, "
                f"{info.resolution} px, {face}, {origin}")

    @property
    def provider(self) -> str:
        return self.session.get_providers()[0]

    def _prepare(self, faces: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
        import cv2

        arr = np.asarray(faces)
        if arr.ndim == 3:
            arr = arr[None]
        if arr.ndim != 4 or arr.shape[-1] != 3:
            raise ValueError(f"faces must be (H, W, 3) or (N, H, W, 3) RGB, got shape {arr.shape}")
        arr = arr.astype(np.float32) / 255.0 if arr.dtype == np.uint8 else arr.astype(np.float32, copy=False)
        res = self.resolution
        if arr.shape[1:3] != (res, res):
            interp = cv2.INTER_AREA if arr.shape[1] > res else cv2.INTER_CUBIC
            arr = np.stack([cv2.resize(a, (res, res), interpolation=interp) for a in arr])
        return np.ascontiguousarray(np.clip(arr, 0, 1)[..., ::-1])  # RGB -> BGR

    def _run(self, bgr: np.ndarray) -> list[np.ndarray]:
        feed = {self._inputs[0]: bgr}
        if len(self._inputs) == 2:
            feed[self._inputs[1]] = np.array([self.morph], np.float32)
        return self.session.run(None, feed)

    def batch(self, faces: np.ndarray | Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        bgr = self._prepare(faces)
        if self._fixed_batch is None:
            outs = self._run(bgr)
        else:  # files with a fixed batch size (e.g. 1): one call per face
            parts = [self._run(bgr[i:i + 1]) for i in range(len(bgr))]
            outs = [np.concatenate([p[k] for p in parts]) for k in range(3)]
        dst_mask, swapped, swapped_mask = (np.clip(np.asarray(o, np.float32), 0, 1) for o in outs)
        return (np.ascontiguousarray(swapped[..., ::-1]), swapped_mask.reshape(swapped_mask.shape[:3]),
                dst_mask.reshape(dst_mask.shape[:3]))

    def __call__(self, face: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        swapped, swapped_mask, dst_mask = self.batch(np.asarray(face)[None])
        return swapped[0], swapped_mask[0], dst_mask[0]


def load_onnx_predictor(path: str | Path, threads: int | None = None, morph: float = 1.0) -> OnnxPredictor:
    """An :class:`OnnxPredictor` for a DFM/ONNX file (ours or any that follows the DFM contract)."""
    return OnnxPredictor(path, threads=threads, morph=morph)


MODEL_SUFFIXES: tuple[str, ...] = (".dfm", ".onnx")


def find_model_files(project: Any) -> list[Path]:
    """DFM/ONNX files in the project's ``output/`` and ``models/`` folders, sorted; hidden files (an atomic write's
    temporary file) and files whose real path leaves the project (a symlink out) are skipped."""
    found: list[Path] = []
    for folder in (project.output_dir, project.models_dir):
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob("*")):
            if path.suffix.lower() not in MODEL_SUFFIXES or path.name.startswith(".") or not path.is_file():
                continue
            real = path.resolve()
            if project.root in real.parents:
                found.append(path)
    return found


def import_model_file(project: Any, source: str | Path, name: str | None = None) -> Path:
    """Copy a DFM/ONNX file into ``PROJECT/models/`` (so every path stays inside the project), after checking that
    it loads in onnxruntime and follows the DFM contract. An existing file of that name is kept: the copy gets
    ``_2``, ``_3``, ... unless it has the same bytes, in which case that file is returned.

    Raises:
        ExportError: not a .dfm/.onnx name, not loadable, or not DFM-shaped (nothing is written then).
    """
    import filecmp
    import re
    import shutil

    from .fileutil import atomic_path

    source = Path(source)
    base = Path(name or source.name).name
    stem, suffix = Path(base).stem, Path(base).suffix.lower()
    if suffix not in MODEL_SUFFIXES:
        raise ExportError("not a DFM/ONNX model file", base, "the file name must end in .dfm or .onnx")
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._")[:80] or "model"
    load_onnx_predictor(source, threads=1)  # refuses a broken or non-DFM file before anything is copied
    folder = Path(project.models_dir)
    folder.mkdir(parents=True, exist_ok=True)
    target, k = folder / f"{stem}{suffix}", 1
    while target.exists():
        if target.is_file() and filecmp.cmp(source, target, shallow=False):
            return target
        k += 1
        target = folder / f"{stem}_{k}{suffix}"
    with atomic_path(target, size_hint=source.stat().st_size) as tmp:
        shutil.copyfile(source, tmp)
    return target


def default_output(project_output_dir: Path, run_name: str, fmt: str) -> Path:
    """``PROJECT/output/<run>.<dfm|onnx>``."""
    return Path(project_output_dir) / f"{run_name}.{fmt}"
