"""Export tab: encode the merged frames into a labelled video with provenance, show past exports."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ExportError, WorkbenchError
from ..project import Project, read_frame_index
from .common import (
    _child,
    _human_size,
    _progress,
    _project,
    _safe_file_name,
    _update,
    guarded,
    is_model_file,
)
from .tab_project import project_overview


def export_choices(root: str | None) -> list[str]:
    if not root:
        return []
    folder = Path(root) / "output"
    return sorted(p.name for p in folder.glob("*.mp4")) if folder.is_dir() else []


def export_project_video(project: Project, name: str, *, run: str | None = None, label: bool = True,
                         overwrite: bool = False, crf: int = 18, progress: bool = True) -> Path:
    """Merged frames -> ``output/<name>`` with the destination's audio and provenance (as ``workbench export``)."""
    from ..export import describe_model, export_project
    from ..merge import merged_models

    # The model recorded by the merge names the frames' maker; the selected run only when nothing was recorded.
    described = describe_model(project, None if merged_models(project) or not run else run)
    path, _ = export_project(project, output=_safe_file_name(name) if name else None, label_synthetic=bool(label),
                             overwrite=bool(overwrite), crf=int(crf), model=described,
                             progress=progress)
    return path


def _show_video(project: Project, path: Path) -> dict[str, Any]:
    from ..export import read_provenance

    record = read_provenance(path)
    return {"video": str(path), "download": _update(value=str(path), visible=True),
            "provenance": record or {"note": "no workbench provenance in this file"},
            "exports": _update(choices=export_choices(str(project.root)), value=path.name),
            "evaluation": evaluation_markdown(project)}


def evaluation_markdown(project: Project) -> str:
    """The project's last evaluation (``evaluation.json``) as a Markdown table, or how to make one."""
    from ..quality import format_table, read_evaluation

    data = read_evaluation(project)
    if not data or "summary" not in data:
        return f"No evaluation yet: run `workbench evaluate {project.root}` (or export again)."
    head = f"**Evaluation** of run `{data.get('run')}` at step {data.get('step')} ({data.get('frames_from')} frames)"
    return head + "\n\n```\n" + format_table(data["summary"]) + "\n```"


def evaluate_export(project: Project, run: str | None) -> str:
    """Score the merged frames the video was made from (identity, pose, expression, flicker)."""
    from ..quality import evaluate_project

    try:
        evaluate_project(project, run=run or None, max_frames=24, merge_sample=False)
    except WorkbenchError as exc:
        return f"Evaluation failed: {exc}"
    return evaluation_markdown(project)


@guarded
def export_video_cb(root: str, name: str, run: str | None = None, label: bool = True, overwrite: bool = False,
                    crf: int = 18, progress: Any = None) -> dict[str, Any]:
    """Encode the merged frames and show the video, its download and its provenance record."""
    project = _project(root)
    if is_model_file(run):
        run = None  # a model file: the merge recorded it in the merged frames' index, which names it
    _progress(progress, 0.0, "encoding video")
    try:
        path = export_project_video(project, name, run=run, label=label, overwrite=overwrite, crf=crf,
                                    progress=True)
    except ExportError as exc:
        if exc.message != "output file already exists":
            raise
        raise ExportError(exc.message, Path(str(exc.path)).name,
                          "tick 'overwrite an existing file', or change the file name above") from exc
    _progress(progress, 0.8, "evaluating the swap (identity, pose, expression)")
    evaluation = evaluate_export(project, run)
    out = _show_video(project, path)
    out["evaluation"] = evaluation
    out.update(project_overview(root))
    size = _human_size(path.stat().st_size)
    out["status"] = (f"Wrote `{project.relative(path)}` ({size}), "
                     f"{'with the visible SYNTHETIC label' if label else 'without a visible label'}; its provenance "
                     "record is shown below. Share it only as what it is: synthetic media.")
    return out


@guarded
def show_export(root: str, name: str | None) -> dict[str, Any]:
    """Show an existing export (video, download, provenance)."""
    project = _project(root)
    if not name:
        return {}
    return _show_video(project, _child(project, project.output_dir, name))


def default_export_name(root: str | None) -> str:
    if not root:
        return "swap.mp4"
    source = ""
    try:
        project = Project.open(root)
        source = project.read_config().get("dst_media") or ""
        source = read_frame_index(project).source or source
    except WorkbenchError:
        pass  # no frames yet: the destination media's name (or the project's) is used
    return f"{Path(source).stem or Path(root).name}_swap.mp4"
