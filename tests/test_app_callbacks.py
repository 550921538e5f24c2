"""The app's callbacks on a small real project (no browser): lp_d18 (source) vs lp_d19 (destination).

The session fixture builds the project through the library: two 36-frame clips cut from the shared videos,
``create_project`` + ``extract_project`` (dlib, 128 px whole face) and a ``tiny`` training run of a few steps
so that a checkpoint, previews and metrics exist. ``build_small_project`` is reused by the browser test.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

CLIP_FRAMES = 36
FACE_SIZE = 128
RUN = "tiny"


# ---------------------------------------------------------------------------------------------- fixtures


def make_clip(source: Path, target: Path, frames: int = CLIP_FRAMES, step: int = 1) -> Path:
    """Re-encode ``frames`` frames (every ``step``-th) of a shared video into a short H.264 clip."""
    import av

    with av.open(str(source)) as inp, av.open(str(target), "w") as out:
        stream = None
        kept = 0
        for i, frame in enumerate(inp.decode(video=0)):
            if i % step:
                continue
            if kept >= frames:
                break
            image = frame.to_ndarray(format="rgb24")
            if stream is None:
                stream = out.add_stream("libx264", rate=30)
                stream.width, stream.height, stream.pix_fmt = image.shape[1], image.shape[0], "yuv420p"
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                out.mux(packet)
            kept += 1
        for packet in stream.encode():
            out.mux(packet)
    return target


def make_clips(folder: Path, data_file) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    src = folder / "d18.mp4"
    dst = folder / "d19.mp4"
    if not src.exists():
        make_clip(data_file("videos/lp_d18.mp4"), src, step=3)
    if not dst.exists():
        make_clip(data_file("videos/lp_d19.mp4"), dst)
    return src, dst


def build_small_project(folder: Path, data_file, *, train_steps: int = 3) -> Path:
    """Create + extract (+ a few tiny training steps when ``train_steps``) a small project; cached by a marker."""
    from workbench.extract import ExtractOptions, extract_project
    from workbench.project import create_project

    marker = folder / ".built.json"
    if marker.exists():
        return folder
    if folder.exists():
        shutil.rmtree(folder)
    src, dst = make_clips(folder.parent / "clips", data_file)
    project = create_project(folder, src, dst, face_type="whole_face", face_size=FACE_SIZE)
    for side in ("src", "dst"):
        extract_project(project, side, ExtractOptions(face_type="whole_face", size=FACE_SIZE, workers=0,
                                                      smoothing=0.5 if side == "dst" else 0.0), progress=False)
    if train_steps:
        from workbench.train import preset, train

        options = preset("tiny", batch_size=4, preview_every=1, metrics_every=2, loader_workers=0, metrics_samples=2)
        train(project.models_dir / RUN, options, steps=train_steps, progress=False)
    marker.write_text(json.dumps({"built": time.time()}))
    return folder


@pytest.fixture(scope="session")
def small_project(tmp_path_factory, data_file) -> Path:
    return build_small_project(tmp_path_factory.getbasetemp() / "app_project" / "proj", data_file)


@pytest.fixture(scope="session")
def ctx(small_project):
    from workbench.app.context import AppContext

    return AppContext(small_project.parent, max_upload_mb=5)


@pytest.fixture
def empty_workspace(tmp_path):
    from workbench.app.context import AppContext

    return AppContext(tmp_path, max_upload_mb=5)


def is_warning(out: dict) -> bool:
    return isinstance(out.get("status"), str) and out["status"].startswith("⚠️")


# ---------------------------------------------------------------------------------------------- project tab


def test_overview_counts_every_stage(small_project):
    from workbench.app import tab_project, texts

    out = tab_project.project_overview(str(small_project))
    table = out["overview"]
    assert f"source {CLIP_FRAMES} (trash 0)" in table and f"destination {CLIP_FRAMES} (trash 0)" in table
    assert f"| destination frames | {CLIP_FRAMES} |" in table
    assert f"`{RUN}`: stopped" in table
    assert out["src_media"]["value"] == "media/src/d18.mp4"
    assert tab_project.project_overview("")["overview"] == texts.NO_PROJECT


def test_create_and_open_projects_stay_inside_the_workspace(empty_workspace, tmp_path):
    from workbench.app import tab_project

    for bad in ("../evil", "/etc", "a/b", "", ".hidden"):
        out = tab_project.create_project(empty_workspace, bad)
        assert is_warning(out), bad
    assert not (tmp_path.parent / "evil").exists()
    out = tab_project.create_project(empty_workspace, "p2", "full", 128)
    assert out["root"] == str((tmp_path / "p2").resolve())
    assert (tmp_path / "p2" / "workbench.json").is_file()
    assert str((tmp_path / "p2").resolve()) in empty_workspace.served_roots
    assert is_warning(tab_project.create_project(empty_workspace, "p2"))  # exists already
    assert tab_project.list_projects(empty_workspace) == ["p2"]
    assert tab_project.open_project(empty_workspace, "p2")["root"] == out["root"]
    assert "not a workbench project" in tab_project.open_project(empty_workspace, "nope")["status"]


def test_uploads_are_checked_and_copied_into_the_project(empty_workspace, tmp_path, data_file):
    from workbench.app import tab_project

    root = tab_project.create_project(empty_workspace, "up")["root"]
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    text = uploads / "notes.txt"
    text.write_text("not a video")
    corrupt = uploads / "broken.mp4"
    corrupt.write_bytes(np.random.default_rng(0).bytes(4096))
    empty = uploads / "empty.mp4"
    empty.write_bytes(b"")
    for bad in (text, corrupt, empty):
        out = tab_project.upload_media(empty_workspace, root, "src", str(bad))
        assert is_warning(out), bad
        assert out["upload"] is None  # a refused file does not stay in the upload box
    # the message names the user's file and the box to use, not the server's cache path
    out = tab_project.upload_media(empty_workspace, root, "src", str(corrupt))
    assert "`broken.mp4`" in out["status"] and str(uploads) not in out["status"]
    assert "Upload source" in out["status"]
    assert not any((Path(root) / "media" / "src").iterdir())
    assert "src_media" not in json.loads((Path(root) / "workbench.json").read_text())
    # too large for the 5 MB limit of the fixture context
    big = uploads / "big.jpg"
    big.write_bytes(b"\xff" * (6 * 1024 * 1024))
    assert "upload limit" in tab_project.upload_media(empty_workspace, root, "src", str(big))["status"]
    # a real photo with a hostile name is accepted, renamed and copied into media/src
    photo = uploads / "my photo;rm -rf.jpg"
    shutil.copyfile(data_file("stills/lp_d18_person/d19.jpg"), photo)
    out = tab_project.upload_media(empty_workspace, root, "src", str(photo))
    assert not is_warning(out), out["status"]
    stored = list((Path(root) / "media" / "src").iterdir())
    assert [p.name for p in stored] == ["my_photo_rm_-rf.jpg"]
    assert json.loads((Path(root) / "workbench.json").read_text())["src_media"] == "media/src/my_photo_rm_-rf.jpg"
    # picking media outside media/<side> is refused
    assert is_warning(tab_project.pick_media(root, "dst", "../../etc/passwd"))
    assert is_warning(tab_project.pick_media(root, "dst", "media/src/my_photo_rm_-rf.jpg"))


def test_callbacks_without_a_project_show_a_message():
    from workbench.app import tab_extract, tab_merge, tab_train

    assert "no project is open" in tab_extract.run_extraction("", "both")["status"]
    assert tab_train.poll_training("", None, {})["train_status"] == "No run selected."
    assert "no project is open" in tab_merge.merge_all(None, "", "tiny", {})["status"]


def test_extraction_of_a_video_without_faces_is_reported(empty_workspace, tmp_path):
    import av

    from workbench.app import tab_extract, tab_project

    root = tab_project.create_project(empty_workspace, "nofaces", "whole_face", 128)["root"]
    clip = tmp_path / "grey.mp4"
    with av.open(str(clip), "w") as out:
        stream = out.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 128, 128, "yuv420p"
        for i in range(4):
            frame = np.full((128, 128, 3), 60 + 20 * i, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    assert not is_warning(tab_project.upload_media(empty_workspace, root, "dst", str(clip)))
    out = tab_extract.run_extraction(root, "dst", face_size=128, workers=0)
    assert "No face was found" in out["status"]
    assert "0 faces written from 4 frames" in out["status"]
    assert "has no src media" in tab_extract.run_extraction(root, "src", face_size=128, workers=0)["status"]


# ---------------------------------------------------------------------------------------------- extract tab


def test_gallery_orders_overlays_selection_and_trash(small_project):
    from workbench.app import tab_curate

    root = str(small_project)
    plain = tab_curate.face_gallery(root, "src")
    assert len(plain["gallery"]) == CLIP_FRAMES and isinstance(plain["gallery"][0][0], str)
    assert plain["gallery_info"].startswith(f"{CLIP_FRAMES} source faces")
    drawn = tab_curate.face_gallery(root, "src", "blur", show_landmarks=True, show_mask=True)
    image, caption = drawn["gallery"][0]
    assert image.shape == (tab_curate.THUMB, tab_curate.THUMB, 3) and image.dtype == np.uint8 and " · " in caption
    for order in tab_curate.GALLERY_ORDERS:
        out = tab_curate.face_gallery(root, "dst", order)
        assert len(out["shown"]) == CLIP_FRAMES, order

    shown = plain["shown"]
    out = tab_curate.select_face(root, "src", shown, [], 3, show_crop=True)
    assert out["selected"]["value"] == [shown[3]]
    assert out["frame_view"].shape == (480, 480, 3)  # the source video frame with box, landmarks, crop square
    assert "yaw" in out["face_info"]
    out = tab_curate.select_face(root, "src", shown, [shown[3], shown[5]], 3)
    assert out["selected"]["value"] == [shown[5]]  # a second click deselects
    # switching faceset (the page calls face_gallery without the selection) clears it: src and dst share names
    assert tab_curate.face_gallery(root, "dst")["selected"]["value"] == []
    dst_view = tab_curate.select_face(root, "dst", tab_curate.face_gallery(root, "dst")["shown"], [], 0)["frame_view"]
    assert dst_view.shape == (480, 480, 3)

    out = tab_curate.trash_faces(root, "src", [shown[0], shown[1]])
    assert "Moved 2 face(s)" in out["status"] and len(out["shown"]) == CLIP_FRAMES - 2
    assert sorted(p.name for p in (small_project / "aligned" / "src_trash").iterdir()) == sorted(shown[:2])
    assert is_warning(tab_curate.trash_faces(root, "src", ["../../workbench.json"]))
    assert is_warning(tab_curate.trash_faces(root, "src", []))
    out = tab_curate.restore_trash(root, "src")
    assert "Restored 2 face(s)" in out["status"] and len(out["shown"]) == CLIP_FRAMES


# ---------------------------------------------------------------------------------------------- train tab


def test_poll_training_reads_the_run_folder_and_only_sends_changes(small_project):
    from workbench.app import tab_train

    root = str(small_project)
    out = tab_train.poll_training(root, RUN, {})
    assert out["train_step"].startswith("Step 3")
    assert f"**{RUN}**: stopped" in out["train_status"]
    assert out["preview"].endswith("previews/latest.png")
    for name in ("loss_plot", "metrics_plot", "psnr_plot", "identity_plot"):
        assert out[name].shape == (240, 520, 3) and out[name].dtype == np.uint8
    # real rows draw lines on a step axis; a single held-out point shows; PSNR has its own curve
    rows = [{"kind": "train", "step": 10, "loss_src": 0.9, "loss_dst": 0.8, "loss_total": 1.7},
            {"kind": "train", "step": 20, "loss_src": 0.7, "loss_dst": 0.6, "loss_total": 1.3},
            {"kind": "eval", "step": 20, "ssim_src": 0.4, "ssim_dst": 0.5, "psnr_src": 18.0, "psnr_dst": 19.0,
             "id_closer_to_src": 0.25, "id_distance_src": 0.61}]
    drawn, empty = tab_train.metrics_plots(rows), tab_train.metrics_plots([])

    def blue(img):  # matplotlib's first series colour
        return int((np.abs(img.astype(int) - (31, 119, 180)).sum(axis=-1) < 40).sum())

    for name in ("loss_plot", "metrics_plot", "psnr_plot", "identity_plot"):
        assert blue(drawn[name]) > blue(empty[name]) + 40, name
    again = tab_train.poll_training(root, RUN, out["train_seen"])
    assert "preview" not in again and "loss_plot" not in again  # unchanged files are not re-sent
    fresh = tab_train.poll_training(root, "brand-new", again["train_seen"])  # a new run name: nothing stale
    assert fresh["preview"] is None and "No preview yet" in fresh["preview_info"]
    assert "**brand-new**: new" in fresh["train_status"]
    assert "Step —" in tab_train.poll_training(root, None, {})["train_step"]


def test_training_controls_and_refusals(small_project, tmp_path):
    from workbench.app import tab_train
    from workbench.train.runs import RunLock, write_status

    root = str(small_project)
    out = tab_train.control_training(root, RUN, "stop")
    assert "is not running" in out["status"]
    assert not (small_project / "models" / RUN / "commands" / "stop").exists()  # nothing left for a later start
    assert is_warning(tab_train.control_training(root, "../x", "stop"))
    assert tab_train.preset_options("tiny")["opt:resolution"] == 64
    loaded = tab_train.run_options(root, RUN)
    assert loaded["opt:batch_size"] == 4 and "resumes" in loaded["status"]
    attached = tab_train.attach_training(root)
    assert attached["run"]["value"] == RUN

    # a run held by a live trainer (here: this process holds its lock) cannot be started twice
    busy = small_project / "models" / "busy"
    busy.mkdir(parents=True, exist_ok=True)
    write_status(busy, {"state": "running", "step": 5, "pid": 1})
    with RunLock(busy):
        options = {k[4:]: v for k, v in tab_train.preset_options("tiny").items() if k.startswith("opt:")}
        out = tab_train.start_training(root, "busy", options)
        assert "already training" in out["status"]
        assert tab_train.poll_training(root, "busy", {})["train_status"].startswith("**busy**: running")
        sent = tab_train.control_training(root, "busy", "pause")
        assert "Pausing" in sent["status"] and (busy / "commands" / "pause").exists()
    shutil.rmtree(busy)
    bad = dict(options, resolution=50)
    assert "resolution" in tab_train.start_training(root, "other", bad)["status"]
    assert not (small_project / "models" / "other" / "status.json").exists()


def test_latent_panel(small_project, ctx):
    from workbench.app import tab_train

    root = str(small_project)
    faces = tab_train.latent_face_choices(root)
    assert faces[0].startswith("src/") and faces[-1].startswith("dst/")
    out = tab_train.latent_reconstruct(ctx, root, RUN, faces[0])
    assert out["latent_image"].ndim == 3 and "Code of" in out["status"]
    out = tab_train.latent_interpolate(ctx, root, RUN, faces[0], faces[-1], steps=4, decoder="dst")
    assert out["latent_image"].shape[1] > 5 * out["latent_image"].shape[0] // 2  # one row of 6 cells
    assert is_warning(tab_train.latent_reconstruct(ctx, root, RUN, "src/../../workbench.json"))


# ---------------------------------------------------------------------------------------------- merge tab


def test_merge_before_a_model_exists_shows_a_message(empty_workspace):
    from workbench.app import tab_merge, tab_project

    root = tab_project.create_project(empty_workspace, "nomodel")["root"]
    (Path(root) / "models" / "r1").mkdir(parents=True)
    # the page re-renders by itself (load, slider): a hint in the info line, no warning toast
    assert "has no trained model yet" in tab_merge.render_merge_frame(empty_workspace, root, "r1", 0, {})["merge_info"]
    assert "Pick a trained model" in tab_merge.render_merge_frame(empty_workspace, root, None, 0, {})["merge_info"]
    assert "No trained model yet" in tab_merge.merge_setup(root)["merge_info"]
    # asked for explicitly: a warning
    assert "has no trained model yet" in tab_merge.color_variants(empty_workspace, root, "r1", 0, {})["status"]
    assert "has no trained model yet" in tab_merge.merge_all(empty_workspace, root, "r1", {})["status"]
    assert "no training run selected" in tab_merge.merge_all(empty_workspace, root, None, {})["status"]


def test_merge_preview_caches_the_prediction_and_renders_colour_variants(small_project, ctx):
    from workbench.app import tab_merge

    root = str(small_project)
    setup = tab_merge.merge_setup(root)
    assert setup["merge_run"]["value"] == RUN and setup["frame"]["maximum"] == CLIP_FRAMES - 1
    defaults = {k[4:]: v for k, v in setup.items() if k.startswith("set:")}
    first = tab_merge.render_merge_frame(ctx, root, RUN, 5, defaults)
    assert first["merged"].shape == (480, 480, 3) and first["mask"].shape == (480, 480)
    assert first["mask"].max() > 0 and "1 face(s)" in first["merge_info"]
    face = first["merged_face"]  # the zoomed face: enlarged, and cut from the merged frame
    assert face.shape[0] >= tab_merge.FACE_ZOOM_PX or face.shape[1] >= tab_merge.FACE_ZOOM_PX
    assert face.dtype == np.uint8 and face.shape[0] < 2 * 480
    # the current frame's identity score (a barely trained model: either answer, but with both distances)
    assert re.search(r"looks like the source: \*\*(yes|no)\*\* \(distance \d\.\d\d to the source, \d\.\d\d to the "
                     r"destination", first["merge_info"]) or "no face detected" in first["merge_info"], first["merge_info"]
    cached = len(ctx._predictions.data)
    t0 = time.perf_counter()
    second = tab_merge.render_merge_frame(ctx, root, RUN, 5, dict(defaults, erode=40, blur=60, color_transfer="lct"))
    rerender = time.perf_counter() - t0
    assert len(ctx._predictions.data) == cached  # only re-composited
    assert not np.array_equal(first["merged"], second["merged"])
    assert rerender < 2.0
    grid = tab_merge.color_variants(ctx, root, RUN, 5, defaults)
    assert grid["color_grid"].ndim == 3 and "colour transfers" in grid["status"]
    assert is_warning(tab_merge.render_merge_frame(ctx, root, RUN, 5, dict(defaults, erode=9999)))


def test_overrides_are_saved_listed_and_removed(small_project):
    from workbench.app import tab_merge
    from workbench.merge import MergeConfig

    root = str(small_project)
    defaults = {k[4:]: v for k, v in tab_merge.merge_setup(root).items() if k.startswith("set:")}
    assert is_warning(tab_merge.add_override(root, 3, 10, defaults))  # equal to the default: nothing to save
    assert is_warning(tab_merge.add_override(root, 10, 3, dict(defaults, blur=20)))
    out = tab_merge.add_override(root, 3, 10, dict(defaults, blur=20, color_transfer="mkl"))
    assert out["overrides"][0][1:3] == [3, 10]
    config = MergeConfig.load(small_project / "merge.json")
    assert config.settings_for(10).blur == 20 and config.settings_for(11).blur == defaults["blur"]
    loaded = tab_merge.load_frame_settings(root, 4)
    assert loaded["set:color_transfer"] == "mkl"
    out = tab_merge.remove_override(root, 1)
    assert out["overrides"] == [] and MergeConfig.load(small_project / "merge.json").overrides == ()
    assert is_warning(tab_merge.remove_override(root, 3))


def test_merge_all_then_export_with_provenance(small_project, ctx):
    from workbench.app import tab_export, tab_merge, tab_project

    root = str(small_project)
    defaults = {k[4:]: v for k, v in tab_merge.merge_setup(root).items() if k.startswith("set:")}
    assert "merged frames are missing" in tab_export.export_video_cb(root, "early.mp4", RUN)["status"]
    out = tab_merge.merge_all(ctx, root, RUN, dict(defaults, blur=30), temporal_smoothing=0.5)
    assert f"frames: {CLIP_FRAMES}" in out["status"], out["status"]
    saved = json.loads((small_project / "merge.json").read_text())
    assert saved["default"]["blur"] == 30 and saved["temporal_smoothing"] == 0.5
    assert saved["default"]["resolution"] == 64  # the model's facts, not the form's
    assert len(list((small_project / "merged").glob("*.png"))) == CLIP_FRAMES
    out = tab_export.export_video_cb(root, "../../escape.mp4", RUN)
    assert not is_warning(out), out["status"]
    video = Path(out["video"])
    assert video.parent == small_project / "output" and video.name == "escape.mp4"
    assert out["provenance"]["tool"] == "Face-Swap Workbench"
    assert f"workbench run '{RUN}'" in out["provenance"]["model"]
    assert out["provenance"]["visible_label"] is True
    again = tab_export.export_video_cb(root, "escape.mp4", RUN)["status"]
    assert "already exists" in again and "overwrite an existing file" in again  # the page's control, not CLI
    assert "--output" not in again and "overwrite=True" not in again and str(small_project) not in again
    # the evaluation of the merged frames the video was made from (also in PROJECT/evaluation.json)
    assert f"run `{RUN}`" in out["evaluation"] and "identity: closer to source" in out["evaluation"]
    assert json.loads((small_project / "evaluation.json").read_text())["frames_from"] == "merged"
    shown = tab_export.show_export(root, "escape.mp4")
    assert shown["video"] == str(video) and shown["download"]["visible"] is True
    assert "escape.mp4" in tab_project.project_overview(root)["overview"]


# ---------------------------------------------------------------------------------------------- page and CLI


def test_build_app_serves_only_the_project(small_project):
    from workbench import CONSENT_RULE
    from workbench.app import build_app, launch_options

    demo = build_app(small_project)
    options = launch_options(demo)
    assert options["allowed_paths"] == [str(small_project.resolve())]
    assert options["max_file_size"] == "500mb"
    config = json.dumps(demo.get_config_file(), default=str)
    assert CONSENT_RULE in config
    assert demo.workbench_context.workspace == small_project.parent.resolve()


def test_on_load_fills_every_tab(small_project, ctx):
    from workbench.app import page, texts

    out = page.on_load(ctx, str(small_project))
    for key in ("overview", "gallery", "run", "face_a", "merge_run", "frame", "exports", "export_name",
                "set:mode", "opt:resolution"):
        assert key in out, key
    assert out["export_name"] == "d19_swap.mp4"
    empty = page.on_load(ctx, "")
    assert empty["overview"] == texts.NO_PROJECT


def test_cli_app_defaults_to_localhost_without_share(tmp_path, capsys):
    from workbench.cli import build_parser, main

    args = build_parser().parse_args(["app", str(tmp_path)])
    assert (args.host, args.share, args.port) == ("127.0.0.1", False, 7860)
    assert build_parser().parse_args(["app", "--share"]).share is True
    assert main(["app", str(tmp_path / "missing")]) == 2
    assert "not a workbench project" in capsys.readouterr().err
