from .DFLJPG import DFLJPG  # noqa: F401
