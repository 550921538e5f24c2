"""XSeg: trainable face segmentation (DFL §2.3) from polygons or, with zero labels, from hull masks + occluders.

* :mod:`.labels` - include/exclude polygons, rasterisation, compact PNG masks (no torch);
* :mod:`.data` - the training set (labels first, else hull masks with synthetic occluders) and batched augmentation;
* :mod:`.trainer` - the background trainer on a run folder (the face trainer's protocol: status, metrics,
  previews, checkpoints, commands, resume after kill); ``python -m workbench.segment RUN``;
* :mod:`.predict` - :func:`predict_masks`, ``apply_masks``/``remove_masks`` on facesets;
* :mod:`.occlusion` - the occluder IoU evaluation on unseen faces.

Names are imported lazily so that ``workbench.faceset`` can use the labels without importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "SegPolygon": "labels", "rasterize_polygons": "labels", "encode_mask_png": "labels",
    "decode_mask_png": "labels", "has_labels": "labels", "POLY_KINDS": "labels",
    "XSegOptions": "trainer", "XSegTrainer": "trainer", "start_xseg": "trainer", "train_xseg": "trainer",
    "default_run_dir": "trainer",
    "predict_masks": "predict", "load_xseg": "predict", "apply_masks": "predict", "remove_masks": "predict",
    "face_mask": "predict",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'workbench.segment' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
