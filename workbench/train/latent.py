"""Look inside a trained model: load it, swap faces, read and edit its latent code (for teaching and merging).

Everything here takes and returns numpy RGB float32 HWC faces in [0, 1] at the model's resolution (other
sizes are resized on the way in). The model comes from a run folder's latest checkpoint; the trainer does
not stream tensors, so a notebook or the Gradio app can call these on CPU while training goes on.

Example:
    >>> model, config = load_model("project/models/tiny")          # doctest: +SKIP
    >>> z = latent_code(model, face)                               # (ae_dims,) bottleneck vector
    >>> frames = interpolate(model, face_a, face_b, steps=8)       # morph between two faces
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from ..errors import TrainingError
from ..machine import describe_machine
from ..tensors import to_images, to_tensor
from .checkpoint import load_checkpoint


def _device(device: str | torch.device) -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    from .trainer import resolve_device  # the same checks and message as training (no CUDA here, ...)

    try:
        return resolve_device(str(device))
    except RuntimeError as exc:  # torch's own text for an unknown device string
        raise TrainingError(f"unknown device {str(device)!r}", hint="use cpu, cuda, cuda:N, mps or auto") from exc


def load_model(run_dir: str | Path, device: str | torch.device = "cpu"):
    """Build the model of a run (or a checkpoint file) and load its latest weights, in eval mode.

    Returns:
        ``(model, config)``: the ``nn.Module`` and its :class:`workbench.models.ModelConfig`.

    Raises:
        TrainingError: no checkpoint yet, or it is unreadable.
    """
    from ..models import ModelConfig, build_model

    target = _device(device)  # refuse a missing device before reading a large checkpoint
    ckpt = load_checkpoint(run_dir, map_location="cpu")
    config = ModelConfig.from_dict(ckpt["model_config"])
    model = build_model(config)
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        raise TrainingError(f"checkpoint weights do not fit the model ({str(exc).splitlines()[0]})", run_dir) from exc
    model.checkpoint_step = int(ckpt.get("step", 0))  # provenance: which training step made the merged frames
    model.to(target).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, config


def _resolution(model: torch.nn.Module) -> int:
    return int(model.config.resolution)


def _to_tensor(model: torch.nn.Module, faces: np.ndarray | Sequence[np.ndarray]) -> torch.Tensor:
    """(H,W,3) or (N,H,W,3) numpy (float [0,1] or uint8) -> (N,3,R,R) float on the model's device."""
    arr = np.asarray(faces)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise ValueError(f"faces must be (H, W, 3) or (N, H, W, 3) RGB, got shape {arr.shape}")
    if arr.dtype == np.uint8:
        arr = arr.astype(np.float32) / 255.0
    arr = np.asarray(arr, np.float32)
    res = _resolution(model)
    if arr.shape[1:3] != (res, res):
        interp = cv2.INTER_AREA if arr.shape[1] > res else cv2.INTER_CUBIC
        arr = np.stack([cv2.resize(a, (res, res), interpolation=interp) for a in arr])
    device = next(model.parameters()).device
    return to_tensor(np.clip(arr, 0, 1), device)


def _to_image(t: torch.Tensor) -> np.ndarray:
    """(N,C,H,W) -> (N,H,W,C) float32 numpy (C=1 squeezed to HW)."""
    out = to_images(t)
    return out[..., 0] if out.shape[-1] == 1 else out


class Predictor:
    """The merger's callable: ``predict(face) -> (swapped, swapped_mask, dst_mask)``.

    ``face`` is an aligned dst face (RGB float (R,R,3), R = ``predictor.resolution``; other sizes are
    resized). ``swapped`` is the src person drawn in the dst face's pose (R,R,3); ``swapped_mask`` the
    mask the src decoder predicts for it (R,R); ``dst_mask`` the mask the dst decoder predicts for the
    dst face itself (R,R) — DFL's merger combines the two.
    """

    def __init__(self, model: torch.nn.Module, config: Any, precision: str = "auto"):
        self.model = model
        self.config = config
        self.resolution = int(config.resolution)
        self.face_type = config.face_type
        self.step = getattr(model, "checkpoint_step", None)
        self.provenance: dict[str, Any] | None = None
        self.autocast_dtype = _inference_dtype(next(model.parameters()).device, precision)

    @torch.inference_mode()
    def batch(self, faces: np.ndarray | Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x = _to_tensor(self.model, faces)
        device_type = x.device.type
        with torch.autocast(device_type, dtype=self.autocast_dtype or torch.float32,
                            enabled=self.autocast_dtype is not None):
            # One encoder pass; the dst decoder only runs its mask path (the merger never uses its image).
            swapped, swapped_mask, dst_mask = self.model.swap_with_dst_mask(x)
        return _to_image(swapped), _to_image(swapped_mask), _to_image(dst_mask)

    def __call__(self, face: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        swapped, swapped_mask, dst_mask = self.batch(face[None] if np.asarray(face).ndim == 3 else face)
        return swapped[0], swapped_mask[0], dst_mask[0]


def load_predictor(run_dir: str | Path, device: str | torch.device = "cpu", precision: str = "auto") -> Predictor:
    """A :class:`Predictor` for a run's latest checkpoint (what ``workbench.merge`` calls).

    ``precision``: "fp32", "bf16", or "auto" (bf16 where the hardware runs it natively: CUDA with bf16
    support, or a CPU with AVX-512 BF16 / AMX; fp32 elsewhere). bf16 changes pixels by about 1/255.
    """
    model, config = load_model(run_dir, device)
    predictor = Predictor(model, config, precision)
    path = Path(run_dir)
    run = path if path.is_dir() else path.parent.parent if path.parent.name == "checkpoints" else path
    # What made the merged frames, recorded by the merger and named by export's provenance.
    predictor.provenance = {"run": run.name, "step": predictor.step}
    return predictor


def _inference_dtype(device: torch.device, precision: str) -> torch.dtype | None:
    """The autocast dtype for inference, or None for plain fp32."""
    if precision not in ("auto", "fp32", "bf16"):
        raise TrainingError(f"unknown inference precision '{precision}'", hint="use auto, fp32 or bf16")
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if device.type == "cpu" and describe_machine(cuda=False).native_bf16 else None


@torch.inference_mode()
def latent_code(model: torch.nn.Module, face: np.ndarray) -> np.ndarray:
    """The bottleneck vector of a face: (ae_dims,) for DF, (2·ae_dims,) for LIAE ([inter_AB, inter_B])."""
    return model.bottleneck(_to_tensor(model, face))[0].float().cpu().numpy()


@torch.inference_mode()
def decode_code(model: torch.nn.Module, code: np.ndarray, identity: str = "src") -> tuple[np.ndarray, np.ndarray]:
    """Draw a bottleneck vector (from :func:`latent_code`, possibly edited) with ``identity``'s decoder.

    Returns:
        (image (R,R,3), mask (R,R)).
    """
    device = next(model.parameters()).device
    z = torch.as_tensor(np.asarray(code, np.float32), device=device).reshape(1, -1)
    img, mask = model.decode(model.code_from_bottleneck(z, identity), identity)
    return _to_image(img)[0], _to_image(mask)[0]


@torch.inference_mode()
def interpolate(model: torch.nn.Module, face_a: np.ndarray, face_b: np.ndarray, steps: int = 8,
                identity: str = "src") -> list[np.ndarray]:
    """Decode ``steps`` points on the straight line between two faces' bottleneck vectors.

    The first image is face_a's reconstruction, the last face_b's; in between the decoder draws codes it
    never saw, showing how smooth the learned face space is.
    """
    if steps < 2:
        raise ValueError(f"steps must be >= 2, got {steps}")
    za = torch.as_tensor(latent_code(model, face_a))
    zb = torch.as_tensor(latent_code(model, face_b))
    t = torch.linspace(0, 1, steps)[:, None]
    z = ((1 - t) * za[None] + t * zb[None]).to(next(model.parameters()).device)
    img, _ = model.decode(model.code_from_bottleneck(z, identity), identity)
    return list(_to_image(img))


@torch.inference_mode()
def reconstruct_both(model: torch.nn.Module, face: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One face through both identities' paths: (drawn by the src decoder, drawn by the dst decoder).

    For a dst face the first image is the swap and the second its reconstruction; for a src face the
    other way round.
    """
    x = _to_tensor(model, face)
    via_src, _ = model.decode(model.encode(x, "src"), "src")
    via_dst, _ = model.decode(model.encode(x, "dst"), "dst")
    return _to_image(via_src)[0], _to_image(via_dst)[0]
