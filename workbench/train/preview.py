"""Preview grids in DFL's SAEHD layout: columns src, src→src, dst, dst→dst, src→dst; then the masked versions.

A grid is a plain RGB float32 array, so the notebook, the Gradio app and the run folder all show the same
picture. Rows are fixed faces (held-out faces first) so successive previews are comparable.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from ..tensors import to_images

COLUMNS = ("src", "src→src", "dst", "dst→dst", "src→dst")
HEADER_PX = 14


def preview_rows(batch_size: int, resolution: int) -> int:
    """DFL's row count: min(4, batch, 800 // res), at least 1."""
    return max(1, min(4, batch_size, 800 // resolution))


@torch.no_grad()
def predict_preview(model: torch.nn.Module, src: torch.Tensor, src_mask: torch.Tensor, dst: torch.Tensor,
                    dst_mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """All images of a preview for fixed (unaugmented) faces: (N,3,R,R) tensors in [0, 1]."""
    src_src, src_src_m = model.decode(model.encode(src, "src"), "src")
    dst_dst, dst_dst_m = model.decode(model.encode(dst, "dst"), "dst")
    src_dst, src_dst_m = model.swap(dst)
    head = model.config.face_type == "head"
    swap_mask = src_dst_m if head else src_dst_m * dst_dst_m  # DFL: dst mask x swap mask (swap mask for head)
    return {
        "src": src, "src→src": src_src, "dst": dst, "dst→dst": dst_dst, "src→dst": src_dst,
        "src_mask": src_mask, "src→src_mask": src_src_m, "dst_mask": dst_mask, "dst→dst_mask": dst_dst_m,
        "src→dst_mask": swap_mask,
    }


def _label(width: int, text: str) -> np.ndarray:
    strip = np.full((HEADER_PX, width, 3), 30, np.uint8)
    scale = 0.35 if width >= 64 else 0.25
    text = text.replace("→", "->")  # Hershey fonts are ASCII only
    cv2.putText(strip, text, (3, HEADER_PX - 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (230, 230, 230), 1, cv2.LINE_AA)
    return strip.astype(np.float32) / 255.0


def make_grid(images: dict[str, torch.Tensor], labels: bool = True) -> np.ndarray:
    """Assemble a preview grid (H, W, 3) float32: 5 unmasked columns, a gap, 5 masked columns.

    The masked half multiplies every image by its mask (DFL's "SAEHD masked" tab).
    """
    cols = []
    for masked in (False, True):
        for name in COLUMNS:
            img = to_images(images[name])
            if masked:
                img = img * to_images(images[f"{name}_mask"])
            column = np.concatenate(list(img), axis=0)  # rows stacked vertically
            if labels:
                column = np.concatenate([_label(column.shape[1], name + (" m" if masked else "")), column], 0)
            cols.append(column)
        if not masked:
            cols.append(np.full((cols[-1].shape[0], 4, 3), 1.0, np.float32))
    return np.ascontiguousarray(np.concatenate(cols, axis=1))
