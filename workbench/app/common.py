"""What every tab's callbacks share: errors shown as messages (:func:`guarded`), Gradio updates and
progress, and the checks that turn page values into project paths (project, side, run, plain file names).

Every callback is a plain function of plain values (the project folder as a string, option values, ...)
that returns a ``dict`` keyed by *output names* (``"status"``, ``"gallery"``, ...). ``ui.py`` maps those names
to components, so no callback depends on the layout and no event returns a long positional tuple. A key
left out of the dict leaves its component unchanged.

Errors a user can cause (:class:`~workbench.errors.WorkbenchError`) are caught by :func:`guarded`, shown as a
warning toast and written into the tab's ``status`` line; unexpected exceptions are logged with their traceback
on the server and shown as one line. Nothing here keeps module-level state: caches live in an
:class:`~workbench.app.context.AppContext` created by ``build_app``.
"""

from __future__ import annotations

import functools
import logging
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import ConfigError, ProjectError, TrainingError, WorkbenchError
from ..project import Project
from ..train.runs import RUN_NAME_RE  # one rule for run names: the library's

log = logging.getLogger("workbench.app")
SIDES = ("src", "dst")
# A model list entry naming a DFM/ONNX file of the project ("file: output/run1.dfm"); a run name never has ": ".
MODEL_FILE_PREFIX = "file: "


def is_model_file(choice: str | None) -> bool:
    """A model list entry naming a DFM/ONNX file of the project (not a training run)."""
    return bool(choice) and str(choice).startswith(MODEL_FILE_PREFIX)


def error_text(exc: BaseException) -> str:
    """One Markdown paragraph for a user-facing error (message, file, hint)."""
    if isinstance(exc, WorkbenchError):
        text = f"**{exc.message}**"
        if exc.path is not None:
            text += f" `{exc.path}`"
        if exc.hint:
            text += f"  \nhint: {exc.hint}"
        return text
    return f"**unexpected error: {type(exc).__name__}: {exc}** (details are in the server log)"


def _toast(kind: str, message: str) -> None:
    try:
        import gradio as gr

        (gr.Warning if kind == "warning" else gr.Info)(message)
    except Exception:  # noqa: BLE001 - a toast must never break a callback (e.g. outside a request)
        log.info("%s: %s", kind, message)


def guarded(fn: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    """Catch errors in a callback: warning toast + ``{"status": message}`` instead of a stack trace."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> dict[str, Any]:
        try:
            return fn(*args, **kwargs)
        except WorkbenchError as exc:
            _toast("warning", str(exc))
            return {"status": "⚠️ " + error_text(exc)}
        except Exception as exc:  # noqa: BLE001 - the page must show a message, not a traceback
            log.exception("callback %s failed", fn.__name__)
            _toast("warning", f"unexpected error: {type(exc).__name__}: {exc}")
            return {"status": "⚠️ " + error_text(exc)}

    return wrapper


def _update(**kwargs: Any) -> Any:
    import gradio as gr

    return gr.update(**kwargs)


def _progress(progress: Any, fraction: float | None, desc: str) -> None:
    if progress is not None:
        try:
            progress(fraction, desc=desc)
        except Exception:  # noqa: BLE001 - progress display is best effort
            pass


def _mtime(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return 0


def _project(root: str | None) -> Project:
    if not root:
        raise ProjectError("no project is open", hint="create or open a project in the Project tab")
    return Project.open(root)


def _check_side(side: str) -> str:
    if side not in SIDES:
        raise ConfigError(f"side must be src or dst, not {side!r}")
    return side


def _safe_file_name(name: str) -> str:
    """A plain file name (no folders) with only harmless characters."""
    base = Path(str(name)).name
    stem, suffix = os.path.splitext(base)
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._") or "upload"
    suffix = re.sub(r"[^A-Za-z0-9.]+", "", suffix).lower()
    return f"{stem[:80]}{suffix}"


def _uploaded_file(ctx: Any, upload: str) -> Path:
    """An uploaded file as Gradio stored it; any other server path (``/etc/passwd``, a file of another user) is
    refused, since a callback called directly could otherwise copy it into the project."""
    from gradio.utils import get_upload_folder

    from ..errors import MediaError

    source = Path(upload).expanduser().resolve()
    allowed = (Path(get_upload_folder()).resolve(), Path(ctx.workspace).resolve())
    if not any(root == source or root in source.parents for root in allowed):
        raise ProjectError("this file was not uploaded through the page", Path(upload).name,
                           "upload the file with the upload box")
    if not source.is_file():
        raise MediaError("the uploaded file is missing", Path(upload).name, "upload it again")
    return source


def _child(project: Project, folder: Path, name: str) -> Path:
    """``folder/name`` for a plain file name, refused if it escapes the folder or the project."""
    if not name or Path(name).name != name or name in (".", ".."):
        raise ProjectError(f"not a plain file name: {name!r}")
    path = project.resolve_inside(folder / name)
    if path.parent != folder.resolve():
        raise ProjectError("path is outside its folder", name)
    return path


def _run_dir(project: Project, run: str | None, must_exist: bool = True) -> Path:
    if not run:
        raise TrainingError("no training run selected", hint="pick a run (or type a new name) in the Train tab")
    run = str(run).strip()
    if not RUN_NAME_RE.match(run):
        raise ConfigError(f"invalid run name {run!r}", hint="use letters, digits, '-', '_' or '.' (up to 64)")
    path = project.resolve_inside(project.models_dir / run)
    if must_exist and not path.is_dir():
        raise TrainingError(f"there is no run named '{run}'", path, "start training to create it")
    return path


def _count_faces(folder: Path) -> int:
    from ..faceset import list_face_files

    return len(list_face_files(folder))


def _human_size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"
