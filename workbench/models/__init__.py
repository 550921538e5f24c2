"""DeepFaceLab-style face-swap autoencoders (DF, LIAE) and their discriminators.

``MODELS`` is the explicit name -> class registry; `build_model` picks the class from ``config.archi``.
Every model has the same interface: ``forward(warped_src, warped_dst) -> dict`` with ``src_src``, ``dst_dst``,
``src_dst`` (the swap) and their ``*_mask`` entries, plus ``encode``, ``swap_code``, ``decode``, ``swap``,
``bottleneck``, ``code_from_bottleneck``, ``reinit_inter`` and ``parameter_groups``.
"""

from __future__ import annotations

from torch import nn

from workbench.errors import ConfigError
from workbench.models.config import FIELD_HELP, ModelConfig
from workbench.models.df import DF
from workbench.models.discriminators import CodeDiscriminator, UNetPatchDiscriminator
from workbench.models.liae import LIAE

MODELS: dict[str, type[nn.Module]] = {"df": DF, "liae": LIAE}


def build_model(config: ModelConfig) -> nn.Module:
    """Instantiate the architecture named by ``config.archi`` (weights glorot-initialised, biases zero).

    To build a big model without allocating memory (e.g. to count parameters), build it under
    ``with torch.device("meta"):``.
    """
    try:
        cls = MODELS[config.archi]
    except KeyError:
        raise ConfigError(
            f"no model registered for archi {config.archi!r}", hint=f"use one of {sorted(MODELS)}"
        ) from None
    return cls(config)


def count_parameters(model: nn.Module) -> int:
    """Number of scalar parameters (conv/dense weights and biases)."""
    return sum(p.numel() for p in model.parameters())


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
