"""The browser workbench (Gradio): every stage of the pipeline, visible, while training runs in the background.

``build_app(project_root)`` builds the page (``ui.py``); the functions it calls live in one module per tab
(``tab_*.py``, sharing ``common.py`` and the caches of ``context.py``) and the learner explanations in
``texts.py``. Start it with ``workbench app [PROJECT]`` or :func:`launch_app`.
Gradio is imported only when these names are used.
"""

from __future__ import annotations

from typing import Any

__all__ = ["build_app", "launch_app", "launch_options"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import ui

        return getattr(ui, name)
    raise AttributeError(f"module 'workbench.app' has no attribute {name!r}")
