"""Error types. Every error a user can cause names the offending path and says how to fix it."""

from __future__ import annotations

from pathlib import Path


class WorkbenchError(Exception):
    """Base class for all errors the workbench raises on bad input or environment.

    Args:
        message: what went wrong, in one sentence.
        path: the file or folder concerned, if any.
        hint: what the user can do about it.
    """

    def __init__(self, message: str, path: str | Path | None = None, hint: str | None = None):
        self.message = message
        self.path = Path(path) if path is not None else None
        self.hint = hint
        super().__init__(str(self))

    def __str__(self) -> str:
        text = self.message
        if self.path is not None:
            text = f"{text} [{self.path}]"
        if self.hint:
            text = f"{text}\n  hint: {self.hint}"
        return text

    def __reduce__(self):
        # Keep path and hint when the error crosses a process boundary (extraction workers).
        return (self.__class__, (self.message, self.path, self.hint))


class DiskFullError(WorkbenchError):
    """The disk (or quota) ran out while writing; nothing already written is lost."""


class MediaError(WorkbenchError):
    """A photo or video is missing, unreadable, truncated or of an unsupported kind."""


class EngineUnavailableError(WorkbenchError):
    """A detection/landmark/identity engine cannot run here (missing package or weights)."""


class MetadataError(WorkbenchError):
    """An aligned face file carries missing or broken workbench metadata."""


class ProjectError(WorkbenchError):
    """A project folder is missing, malformed, or a path escapes it."""


class ConfigError(WorkbenchError):
    """An option value is out of range or inconsistent with another."""


class TrainingError(WorkbenchError):
    """Training cannot start or continue (faceset too small, checkpoint mismatch, out of memory...)."""


class MergeError(WorkbenchError):
    """Merging cannot proceed (no model, no aligned destination faces, mismatched face type...)."""


class ExportError(WorkbenchError):
    """The final video cannot be written (ffmpeg failure, unwritable path, existing file...)."""
