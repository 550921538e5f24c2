"""DeepFaceLab-style face-swap autoencoders (DF, LIAE) and their discriminators.

``MODELS`` is the explicit name -> class registry; `build_model` picks the class from ``config.archi``.
Every model has the same interface: ``forward(warped_src, warped_dst) -> dict`` with ``src_src``, ``dst_dst``,
``src_dst`` (the swap) and their ``*_mask`` entries, plus ``encode``, ``swap_code``, ``decode``, ``swap``,
``bottleneck``, ``code_from_bottleneck``, ``reinit_inter`` and ``parameter_groups``.

Importing this package does not import torch: :class:`ModelConfig` and ``FIELD_HELP`` are plain Python (the CLI
and option forms read them); the modules and the registry load on first use of their names.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from workbench.models.config import FIELD_HELP, ModelConfig

_LAZY = {
    "DF": "workbench.models.df",
    "LIAE": "workbench.models.liae",
    "CodeDiscriminator": "workbench.models.discriminators",
    "UNetPatchDiscriminator": "workbench.models.discriminators",
    "MODELS": "workbench.models.registry",
    "build_model": "workbench.models.registry",
    "count_parameters": "workbench.models.registry",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'workbench.models' has no attribute {name!r}")


__all__ = [
    "DF",
    "FIELD_HELP",
    "LIAE",
    "MODELS",
    "CodeDiscriminator",
    "ModelConfig",
    "UNetPatchDiscriminator",
    "build_model",
    "count_parameters",
]
