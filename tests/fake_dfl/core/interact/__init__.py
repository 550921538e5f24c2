from .interact import interact  # noqa: F401
