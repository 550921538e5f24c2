"""The app context: workspace, served folders and bounded caches (one per app, never module-level)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import MergeError
from ..images import read_image
from ..project import Project
from .common import _mtime

if TYPE_CHECKING:
    from ..merge import FrameFaces


class _LRU:
    def __init__(self, size: int):
        self.size = size
        self.data: OrderedDict[Any, Any] = OrderedDict()

    def get(self, key: Any) -> Any:
        if key in self.data:
            self.data.move_to_end(key)
            return self.data[key]
        return None

    def put(self, key: Any, value: Any) -> Any:
        self.data[key] = value
        self.data.move_to_end(key)
        while len(self.data) > self.size:
            self.data.popitem(last=False)
        return value


class AppContext:
    """What one running app shares between its callbacks: the workspace and a few bounded caches.

    Args:
        workspace: the only folder in which projects may be created or opened from the page.
        max_upload_mb: upload size limit (also passed to ``launch(max_file_size=...)``).
    """

    def __init__(self, workspace: str | Path, max_upload_mb: int = 500):
        self.workspace = Path(workspace).expanduser().resolve()
        self.max_upload_mb = int(max_upload_mb)
        self.served_roots: list[str] = []
        self.on_project_opened: Callable[[Path], None] | None = None
        self._lock = threading.RLock()
        self._predictors = _LRU(2)
        self._predictions = _LRU(256)
        self._frames = _LRU(16)
        self._faces = _LRU(4)
        self._identity = _LRU(2)

    # -- projects --------------------------------------------------------------------------------------
    def project_opened(self, project: Project) -> None:
        """Record a project the page may show files from (``allowed_paths``), and tell the UI."""
        with self._lock:
            if str(project.root) not in self.served_roots:
                self.served_roots.append(str(project.root))
        if self.on_project_opened is not None:
            self.on_project_opened(project.root)

    # -- models ----------------------------------------------------------------------------------------
    def predictor(self, run_dir: Path) -> Any:
        """The run's latest checkpoint as a merge predictor (reloaded when the checkpoint file changes)."""
        from ..train import load_predictor
        from ..train.runs import checkpoint_path

        ckpt = checkpoint_path(run_dir)
        if not ckpt.is_file():
            raise MergeError(f"run '{run_dir.name}' has no trained model yet", run_dir,
                             "start training in the Train tab: a checkpoint is saved at the first step")
        key = (str(run_dir), ckpt.stat().st_mtime_ns)
        with self._lock:
            cached = self._predictors.get(key)
            if cached is None:
                cached = self._predictors.put(key, load_predictor(run_dir, device="cpu"))
            return cached

    def model_file(self, path: Path) -> Any:
        """A DFM/ONNX file of the project as a merge predictor (reloaded when the file changes)."""
        from ..export_model import load_onnx_predictor

        key = ("model-file", str(path), _mtime(path))
        with self._lock:
            cached = self._predictors.get(key)
            if cached is None:
                cached = self._predictors.put(key, load_onnx_predictor(path))
            return cached

    def predictions(self, key: tuple, compute: Callable[[], list]) -> list:
        with self._lock:
            cached = self._predictions.get(key)
        if cached is None:
            cached = compute()
            with self._lock:
                self._predictions.put(key, cached)
        return cached

    # -- frames and faces ------------------------------------------------------------------------------
    def frame_faces(self, project: Project) -> FrameFaces:
        """:func:`workbench.merge.frame_faces`, recomputed when frames.json or the dst faceset changes."""
        from ..merge import frame_faces

        index_path = project.frames_dir / "frames.json"
        folder = project.aligned_dir("dst")
        key = (str(project.root), _mtime(index_path), _mtime(folder))
        with self._lock:
            cached = self._faces.get(key)
        if cached is not None:
            return cached
        result = frame_faces(project)
        with self._lock:
            self._faces.put(key, result)
        return result

    def frame_image(self, path: Path) -> np.ndarray:
        key = (str(path), _mtime(path))
        with self._lock:
            cached = self._frames.get(key)
        if cached is None:
            cached = read_image(path)
            with self._lock:
                self._frames.put(key, cached)
        return cached

    # -- identity references (the Merge tab's "looks like the source" score) ----------------------------
    def identity_references(self, project: Project) -> tuple[np.ndarray, np.ndarray]:
        """Robust src/dst reference embeddings of the project's facesets (recomputed when a faceset changes)."""
        from ..quality import faceset_embeddings, reference_from_embeddings

        key = (str(project.root), _mtime(project.aligned_dir("src")), _mtime(project.aligned_dir("dst")))
        with self._lock:
            cached = self._identity.get(key)
        if cached is None:
            cached = tuple(reference_from_embeddings(faceset_embeddings(project.aligned_dir(side)))
                           for side in ("src", "dst"))
            with self._lock:
                self._identity.put(key, cached)
        return cached
