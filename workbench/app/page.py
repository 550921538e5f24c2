"""Page-wide callbacks: what the page shows when it (re)opens, and the cross-tab list refresh."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .common import _update
from .context import AppContext
from .tab_curate import face_gallery
from .tab_export import default_export_name, export_choices
from .tab_extract import extract_defaults, reference_choices
from .tab_merge import merge_model_choices, merge_setup
from .tab_project import list_projects, project_label, project_overview
from .tab_train import attach_training, latent_face_choices, run_choices


def on_load(ctx: AppContext, root: str | None) -> dict[str, Any]:
    """Everything the page shows when it (re)opens: overview, galleries, runs, merge and export state."""
    out: dict[str, Any] = {"project_label": project_label(root),
                           "project_list": _update(choices=list_projects(ctx),
                                                   value=Path(root).name if root else None)}
    out.update(project_overview(root))
    if not root:
        return out
    out.update(extract_defaults(root))
    out["reference"] = _update(choices=reference_choices(root))
    out.update({k: v for k, v in face_gallery(root, "src").items() if k != "status"})
    attach = attach_training(root)
    out.update({k: v for k, v in attach.items() if k != "status"})
    if "status" in attach:
        out["train_status_note"] = attach["status"]
    faces = latent_face_choices(root)
    out["face_a"] = _update(choices=faces, value=faces[0] if faces else None)
    out["face_b"] = _update(choices=faces, value=faces[-1] if faces else None)
    out.update({k: v for k, v in merge_setup(root).items() if k != "status"})
    out["exports"] = _update(choices=export_choices(root))
    out["export_name"] = default_export_name(root)
    return out


def refresh_lists(root: str | None) -> dict[str, Any]:
    """Cheap refresh of the choice lists that depend on other tabs' work (runs, faces, exports)."""
    faces = latent_face_choices(root)
    return {"face_a": _update(choices=faces), "face_b": _update(choices=faces),
            "merge_run": _update(choices=merge_model_choices(root)) if root else _update(),
            "exports": _update(choices=export_choices(root)),
            "run": _update(choices=run_choices(root))}
