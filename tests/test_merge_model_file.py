"""The app's Merge tab with a DFM/ONNX file instead of a training run: the model list, an upload copied into
``models/``, the preview, "merge all", "merge all as a job" and the export's provenance (no browser).

The project is a copy of the session's ``trained_project`` (run ``run1``, 6 lp_d19 frames at 640x480), so merging
here does not change what other modules see.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from model_fixtures import RUN, dst_frames, trained_project  # noqa: F401  (fixtures)
from train_fixtures import faceset_pair  # noqa: F401  (fixture)

from workbench.errors import ExportError
from workbench.export_model import export_run, find_model_files, import_model_file
from workbench.project import Project

pytestmark = pytest.mark.slow

DFM = f"output/{RUN}.dfm"


@pytest.fixture(scope="module")
def project_copy(trained_project, tmp_path_factory) -> Path:  # noqa: F811
    """The trained project (frames, dst faces, run1) plus its DFM, copied; nothing merged yet."""
    root = tmp_path_factory.mktemp("merge_model_ws") / "proj"
    keep = ("workbench.json", "frames", "aligned", "models")
    root.mkdir()
    for name in keep:
        src = trained_project / name
        if src.is_dir():
            shutil.copytree(src, root / name)
        else:
            shutil.copy2(src, root / name)
    export_run(root / "models" / RUN, root / DFM)
    return root


@pytest.fixture()
def ctx(project_copy):
    from workbench.app.context import AppContext

    return AppContext(project_copy.parent)


def _defaults(root: str) -> dict:
    from workbench.app import tab_merge

    return {k[4:]: v for k, v in tab_merge.merge_setup(root).items() if k.startswith("set:")}


def test_model_files_are_found_and_imported_inside_the_project(project_copy, tmp_path):
    project = Project.open(project_copy)
    dfm = project_copy / DFM
    (project.output_dir / ".run1.tmp-abc.dfm").write_bytes(b"half written")  # an atomic write in progress
    outside = tmp_path / "elsewhere.dfm"
    shutil.copyfile(dfm, outside)
    link = project.output_dir / "link.dfm"
    link.symlink_to(outside)
    try:
        assert find_model_files(project) == [dfm]  # neither the temporary file nor the link out of the project
    finally:
        link.unlink()
        (project.output_dir / ".run1.tmp-abc.dfm").unlink()

    stored = import_model_file(project, outside, "My model (v2).DFM")
    assert stored == project.models_dir / "My_model_v2.dfm" and stored.read_bytes() == dfm.read_bytes()
    assert import_model_file(project, outside, "My model (v2).dfm") == stored  # same bytes: no second copy
    other = tmp_path / "other.dfm"
    proto = onnx.load(str(dfm))
    proto.doc_string = "a different file"
    onnx.save(proto, str(other))
    second = import_model_file(project, other, "My model (v2).dfm")
    assert second.name == "My_model_v2_2.dfm"  # an existing file of that name is kept
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    before = sorted(os.listdir(project.models_dir))
    with pytest.raises(ExportError, match="onnxruntime cannot load"):
        import_model_file(project, junk)
    with pytest.raises(ExportError, match="must end in .dfm or .onnx"):
        import_model_file(project, dfm, "model.pt")
    assert sorted(os.listdir(project.models_dir)) == before  # nothing written for a refused file
    for path in (stored, second):
        path.unlink()


def test_merge_tab_previews_with_a_model_file_like_with_its_run(project_copy, ctx):
    from workbench.app import tab_merge
    from workbench.app.common import MODEL_FILE_PREFIX

    root = str(project_copy)
    choices = tab_merge.merge_model_choices(root)
    assert choices == [RUN, MODEL_FILE_PREFIX + DFM]
    assert tab_merge.merge_setup(root)["merge_run"]["value"] == RUN  # the newest run stays the default
    defaults = dict(_defaults(root), color_transfer="none")
    by_run = tab_merge.render_merge_frame(ctx, root, RUN, 2, defaults)
    by_file = tab_merge.render_merge_frame(ctx, root, MODEL_FILE_PREFIX + DFM, 2, defaults)
    assert f"Model: training run `{RUN}` at step" in by_run["merge_info"]
    assert f"Model: model file `{DFM}` ({RUN}.dfm: onnxruntime CPU, 64 px, full, exported from run {RUN}" \
        in by_file["merge_info"], by_file["merge_info"]
    frame = np.asarray(by_run["merged"], int)
    diff = np.abs(frame - np.asarray(by_file["merged"], int))
    assert diff.max() <= 3 and diff.mean() < 0.05, (diff.max(), diff.mean())
    dst = tab_merge.render_merge_frame(ctx, root, RUN, 2, dict(defaults, mode="original"))["merged"]
    assert np.abs(frame - np.asarray(dst, int)).max() > 30  # the face was swapped
    # the file's predictor is cached like a run's: a second render does not reload it
    assert ctx.model_file(project_copy / DFM) is ctx.model_file(project_copy / DFM)

    # names that are not model files of this project are refused with a message, not a traceback
    for bad, words in ((MODEL_FILE_PREFIX + "../../escape.dfm", "outside the project"),
                       (MODEL_FILE_PREFIX + "workbench.json", "not a DFM/ONNX model file"),
                       (MODEL_FILE_PREFIX + "output/missing.dfm", "the model file is missing")):
        out = tab_merge.render_merge_frame(ctx, root, bad, 2, defaults)
        assert "merged" not in out and words in out["status"], (bad, out)


def test_upload_merge_all_job_and_export_with_a_model_file(project_copy, ctx, tmp_path):
    from workbench.app import tab_merge
    from workbench.app.common import MODEL_FILE_PREFIX
    from workbench.app.jobs_tab import merge_as_job
    from workbench.export import describe_model
    from workbench.images import read_image, to_uint8
    from workbench.jobs import JobStore

    root = str(project_copy)
    # an upload (here: a file the page's upload folder or the workspace holds) is copied into models/ and selected
    upload = project_copy.parent / "upload" / "shared by a friend.dfm"
    upload.parent.mkdir(exist_ok=True)
    shutil.copyfile(project_copy / DFM, upload)
    out = tab_merge.upload_model_file(ctx, root, str(upload))
    choice = MODEL_FILE_PREFIX + "models/shared_by_a_friend.dfm"
    assert out["merge_run"]["value"] == choice and choice in out["merge_run"]["choices"], out
    assert (project_copy / "models" / "shared_by_a_friend.dfm").is_file()
    refused = tab_merge.upload_model_file(ctx, root, "/etc/hostname")
    assert "was not uploaded through the page" in refused["status"]

    defaults = dict(_defaults(root), color_transfer="none")
    out = tab_merge.merge_all(ctx, root, choice, defaults)
    assert "frames: 6" in out["status"] and "model file `models/shared_by_a_friend.dfm`" in out["status"], out
    merged = sorted((project_copy / "merged").glob("*.png"))
    assert len(merged) == 6
    saved = json.loads((project_copy / "merge.json").read_text())
    assert saved["default"]["resolution"] == 64 and saved["default"]["face_type"] == "full"
    first_by_file = to_uint8(read_image(merged[0])).astype(int)
    # the merged frames' index names the file, so the export's provenance does too (not "the latest run")
    from workbench.merge import merged_models

    [record] = merged_models(Project.open(project_copy))
    assert record["model_file"] == "shared_by_a_friend.dfm" and record["exported_from"] == RUN
    model = describe_model(Project.open(project_copy))  # what the export writes into the video's provenance
    assert "DFM/ONNX model file 'shared_by_a_friend.dfm'" in model and f"exported from workbench run '{RUN}'" in model
    assert "latest run" not in model

    # the same frames from the run, within the DFM tolerance
    tab_merge.merge_all(ctx, root, RUN, defaults)
    diff = np.abs(to_uint8(read_image(merged[0])).astype(int) - first_by_file)
    assert diff.max() <= 3, diff.max()

    # "merge all as a job" names the file the way `workbench merge --model` takes it
    store = JobStore(tmp_path / "jobs.sqlite")
    merge_as_job(root, choice, defaults, store=store, start_server=False)
    merge_as_job(root, RUN, defaults, store=store, start_server=False)
    argvs = [list(job.argv) for job in store.list()]
    assert any(a[-2:] == ["--model", "models/shared_by_a_friend.dfm"] for a in argvs), argvs
    assert any(a[-2:] == ["--run", RUN] for a in argvs), argvs
    bad = merge_as_job(root, MODEL_FILE_PREFIX + "../x.dfm", defaults, store=store, start_server=False)
    assert "outside the project" in bad["status"]
