"""The architecture registry: ``MODELS`` (name -> class), :func:`build_model` and :func:`count_parameters`."""

from __future__ import annotations

from torch import nn

from workbench.errors import ConfigError
from workbench.models.config import ModelConfig
from workbench.models.df import DF
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
