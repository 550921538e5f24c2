from .Model import Model  # noqa: F401
