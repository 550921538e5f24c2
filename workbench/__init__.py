"""Face-Swap Workbench: the DeepFaceLab pipeline as a small, testable teaching library.

Stages (each a module of pure functions on RGB float32 HWC arrays in [0, 1]):
``detect`` -> ``align`` -> ``masks`` -> ``train`` -> ``merge`` (with ``color``) -> ``export``.
Use only faces you have the right to use; every exported video is labelled synthetic.
"""

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("face-swap-workbench")
except _metadata.PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+source"

CONSENT_RULE = (
    "Only use faces you have the right to use: your own, or people who gave you their explicit consent. "
    "Outputs are synthetic media and are labelled as such."
)

__all__ = ["__version__", "CONSENT_RULE"]
