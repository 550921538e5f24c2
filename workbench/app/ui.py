"""The Gradio layout: ``build_app()`` builds the page and wires each event to a function of a tab module
(``tab_project``, ``tab_extract``, ``tab_curate``, ``tab_train``, ``tab_merge``, ``tab_export``, ``page``).

No pipeline logic lives here. Callbacks take named values and return dicts keyed by output *names*; the small
adapter :func:`_wire` maps names to components, so events never return long positional tuples and a callback
can update any subset of its outputs. ``launch_app()`` starts the server with the security settings
(127.0.0.1, files served only from the project folder, an upload size limit, no analytics).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import gradio as gr  # noqa: E402

from ..project import Project  # noqa: E402
from . import context, page, tab_curate, tab_export, tab_extract, tab_merge, tab_project, tab_train, texts  # noqa: E402
from .jobs_tab import build_tab as build_jobs_tab  # noqa: E402
from .jobs_tab import export_as_job, extract_as_job, merge_as_job, train_as_job, wire_run_as_job  # noqa: E402

DEFAULT_MAX_UPLOAD_MB = 500
POLL_SECONDS = 1.0
FACE_TYPES = ("half", "mid_full", "full", "whole_face", "head")
CSS = """
#consent-rule { border-left: 4px solid #d97706; background: rgba(217,119,6,0.08); padding: 4px 12px; }
#train-step, #train-step p { font-size: 1.35em; font-weight: 600; }
.learn { opacity: 0.92; font-size: 0.95em; }
#extract-status, #merge-status, #export-status { min-height: 4.6em; }
.live-controls { display: flex; gap: 12px; align-items: center; flex-wrap: wrap; margin: 4px 0 8px; }
.live-controls button { padding: 6px 14px; border-radius: 6px; border: 1px solid #999; cursor: pointer; }
.live-panes { display: flex; gap: 12px; flex-wrap: wrap; }
.live-panes > div { flex: 1 1 320px; min-width: 0; min-height: 120px; background: rgba(127,127,127,0.08); }
.live-note { opacity: 0.75; font-size: 0.9em; }
"""

# The options shown first on the Train tab; every other TrainOptions field is in "All other options".
MAIN_OPTIONS = ("archi", "resolution", "face_type", "ae_dims", "e_dims", "d_dims", "d_mask_dims", "batch_size",
                "optimizer", "lr", "preview_every", "metrics_every", "target_steps", "device")
AUGMENT_OPTIONS = ("masked_training", "random_warp", "random_src_flip", "random_dst_flip", "ct_mode",
                   "uniform_yaw", "eyes_mouth_prio", "random_hsv_power", "lr_dropout", "gan_power")

Inputs = Mapping[str, Any]  # name -> component, or name -> {key: component} (passed to the callback as a dict)
Outputs = Mapping[str, Any]  # output name -> component


# ----------------------------------------------------------------------------------------------------------
# the adapter between named callbacks and Gradio's positional events


def _flatten(inputs: Inputs) -> list[tuple[str, str | None, Any]]:
    flat = []
    for name, comp in inputs.items():
        if isinstance(comp, Mapping):
            flat += [(name, key, c) for key, c in comp.items()]
        else:
            flat.append((name, None, comp))
    return flat


def _pack(flat: list[tuple[str, str | None, Any]], values: tuple) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    for (name, key, _), value in zip(flat, values):
        if key is None:
            kwargs[name] = value
        else:
            kwargs.setdefault(name, {})[key] = value
    return kwargs


def _wire(trigger: Any, fn: Callable[..., dict[str, Any]], inputs: Inputs, outputs: Outputs, *,
          progress: bool = False, select: bool = False, **event_kwargs: Any) -> Any:
    """Connect ``trigger`` (an event method or a list of triggers) to ``fn``, mapping names both ways."""
    flat = _flatten(inputs)
    components = [c for _, _, c in flat]
    by_name = dict(outputs)
    out_components = list(dict.fromkeys(by_name.values()))

    def route(result: Mapping[str, Any] | None) -> dict[Any, Any]:
        return {by_name[k]: v for k, v in (result or {}).items() if k in by_name}

    if select:
        def handler(evt: gr.SelectData, *values: Any) -> dict[Any, Any]:
            return route(fn(**_pack(flat, values), index=evt.index))
    elif progress:
        def handler(progress=gr.Progress(track_tqdm=True), *values: Any) -> dict[Any, Any]:  # noqa: B008
            return route(fn(**_pack(flat, values), progress=progress))
    else:
        def handler(*values: Any) -> dict[Any, Any]:
            return route(fn(**_pack(flat, values)))

    handler.__name__ = getattr(fn, "__name__", "handler")
    event_kwargs.setdefault("api_visibility", "private")
    if isinstance(trigger, list):
        return gr.on(trigger, handler, inputs=components, outputs=out_components, **event_kwargs)
    return trigger(handler, inputs=components, outputs=out_components, **event_kwargs)


def _option_component(spec: Any, value: Any) -> Any:
    """A training option's control, generated from its field description (``train.options.OPTION_SPECS``):
    a checkbox, a dropdown of its choices, or a number box bounded by its range."""
    label = spec.name.replace("_", " ")
    eid = f"opt-{spec.name}"
    if spec.kind == "bool":
        return gr.Checkbox(value=value, label=label, info=spec.help, elem_id=eid)
    if spec.choices is not None:
        return gr.Dropdown(list(spec.choices), value=value, label=label, info=spec.help, elem_id=eid)
    if spec.kind in ("int", "float"):
        lo, hi = spec.range or (None, None)
        return gr.Number(value=value, precision=0 if spec.kind == "int" else None, minimum=lo, maximum=hi,
                         label=label, info=spec.help, elem_id=eid)
    return gr.Textbox(value=str(value), label=label, info=spec.help, elem_id=eid)


def _setting_component(name: str, default: Any, help_text: str) -> Any:
    """A merge setting's control, generated from its field description (``merge.settings.SETTING_SPECS``)."""
    from ..merge.settings import SETTING_SPECS

    spec = SETTING_SPECS[name]
    label = name.replace("_", " ")
    eid = f"set-{name}"
    if spec.choices is not None:
        choices = spec.choices
        if name == "mask_mode":
            help_text += " (the xseg-* modes use the XSeg model trained in the Segment tab)"
        return gr.Dropdown(list(choices), value=default, label=label, info=help_text, elem_id=eid)
    if spec.kind == "bool":
        return gr.Checkbox(value=default, label=label, info=help_text, elem_id=eid)
    lo, hi = spec.range or (0, 100)
    if name == "super_resolution_power":
        return gr.Slider(lo, hi, value=0, step=1, label=label, interactive=False, elem_id=eid,
                         info=help_text + " Not available here: no face-enhancer model is installed.")
    return gr.Slider(lo, hi, value=default, step=1, label=label, info=help_text, elem_id=eid)


# ----------------------------------------------------------------------------------------------------------
# the page


def build_app(project_root: str | Path | None = None, *, workspace: str | Path | None = None,
              max_upload_mb: int = DEFAULT_MAX_UPLOAD_MB, poll_seconds: float = POLL_SECONDS) -> gr.Blocks:
    """Build the workbench page for a project (or an empty "create/open a project" state).

    Args:
        project_root: the project folder to open, or None.
        workspace: the folder in which the page may create or open projects (default: the project's parent
            folder, or the current folder without a project). Nothing outside it can be opened.
        max_upload_mb: the upload size limit.
        poll_seconds: how often the Train tab polls the run folder for status and previews.

    Returns:
        The ``gr.Blocks``; launch it with :func:`launch_app` or ``demo.launch(**launch_options(demo))``.
    """
    from ..merge import FIELD_HELP
    from ..train.options import PRESETS
    from . import live_tab, tab_segment

    root = str(Project.open(project_root).root) if project_root else ""
    if workspace is None:
        workspace = Path(root).parent if root else Path.cwd()
    ctx = context.AppContext(workspace, max_upload_mb)
    if root:
        ctx.served_roots.append(root)

    with gr.Blocks(title=texts.TITLE, analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
        root_state = gr.State(root)
        gr.Markdown(texts.HEADER)
        gr.Markdown(texts.CONSENT, elem_id="consent-rule")
        project_label = gr.Markdown(tab_project.project_label(root), elem_id="project-label")

        with gr.Tabs():
            # ---------------------------------------------------------------------------- Project
            with gr.Tab("1 · Project", id="tab-project"):
                gr.Markdown(texts.PROJECT, elem_classes=["learn"])
                with gr.Row():
                    with gr.Column():
                        # custom values: a just-created project is valid before the choices reach the page
                        project_list = gr.Dropdown(tab_project.list_projects(ctx), value=Path(root).name if root else None,
                                                   label=f"Projects in {ctx.workspace}", elem_id="project-list",
                                                   allow_custom_value=True)
                        open_btn = gr.Button("Open project")
                    with gr.Column():
                        new_name = gr.Textbox(label="New project name", placeholder="myproject", elem_id="new-name")
                        with gr.Row():
                            new_face_type = gr.Dropdown(FACE_TYPES, value="whole_face", label="face type")
                            new_face_size = gr.Slider(64, 1024, value=256, step=32, label="aligned face size (px)")
                        create_btn = gr.Button("Create project")
                with gr.Row():
                    with gr.Column():
                        src_upload = gr.File(label="Upload source (the face you want to see): video or photo",
                                             file_types=["video", "image"], elem_id="src-upload", height=150)
                        src_media = gr.Dropdown([], label="or pick source media already in the project", allow_custom_value=True)
                    with gr.Column():
                        dst_upload = gr.File(label="Upload destination (the video to change): video or photo",
                                             file_types=["video", "image"], elem_id="dst-upload", height=150)
                        dst_media = gr.Dropdown([], label="or pick destination media already in the project",
                                                allow_custom_value=True)
                project_status = gr.Markdown(elem_id="project-status")
                with gr.Row():
                    gr.Markdown("### What each stage has produced")
                    refresh_btn = gr.Button("Refresh", size="sm", scale=0)
                overview = gr.Markdown(texts.NO_PROJECT, elem_id="overview")

            # ---------------------------------------------------------------------------- Extract
            with gr.Tab("2 · Extract", id="tab-extract") as extract_tab:
                gr.Markdown(texts.EXTRACT, elem_classes=["learn"])
                with gr.Row():
                    ex_side = gr.Radio(["both", "src", "dst"], value="both", label="side")
                    ex_engine = gr.Dropdown(["auto", "dlib", "haar", "mtcnn", "yunet", "dlib_cnn", "face_alignment"],
                                            value="auto", label="engine",
                                            info="auto: offline default (HOG, then YuNet/MTCNN for missed faces); "
                                                 "dlib: HOG only; dlib_cnn: slower; face_alignment: S3FD+FAN "
                                                 "(needs downloaded weights)")
                    ex_face_type = gr.Dropdown(FACE_TYPES, value="whole_face", label="face type",
                                               info="how much of the head the aligned crop covers")
                    ex_size = gr.Slider(64, 1024, value=256, step=32, label="aligned size (px)")
                with gr.Accordion("More extraction options", open=False):
                    with gr.Row():
                        ex_target = gr.Dropdown(["largest", "center", "all"], value="largest", label="target",
                                                info="which faces to keep when several are in frame")
                        ex_every = gr.Number(1, precision=0, label="every n-th frame")
                        ex_smoothing = gr.Slider(0, 1, value=0.5, step=0.05, label="landmark smoothing (dst video)")
                        ex_workers = gr.Number(2, precision=0, label="detection worker processes")
                    with gr.Row():
                        ex_reference = gr.Dropdown([], label="reference person (keep only faces like this photo)",
                                                   allow_custom_value=True)
                        ex_threshold = gr.Slider(0.3, 0.9, value=0.6, step=0.05, label="identity threshold",
                                                 info="lower = stricter (dlib's usual 0.6)")
                        ref_upload = gr.File(label="upload a reference photo", file_types=["image"])
                with gr.Row():
                    extract_btn = gr.Button("Extract faces", variant="primary", elem_id="extract-btn", scale=3)
                    extract_job_btn = gr.Button("Run as a job", elem_id="extract-job-btn", scale=1)
                extract_status = gr.Markdown(elem_id="extract-status")

                gr.Markdown(texts.CURATE, elem_classes=["learn"])
                with gr.Row():
                    g_side = gr.Radio(["src", "dst"], value="src", label="faceset", elem_id="gallery-side")
                    g_order = gr.Dropdown(list(tab_curate.GALLERY_ORDERS), value="file", label="order by",
                                          info="sorting scores from workbench.sort; nothing is renamed")
                    g_landmarks = gr.Checkbox(False, label="landmarks")
                    g_mask = gr.Checkbox(False, label="mask overlay")
                    g_crop = gr.Checkbox(True, label="crop square on the frame")
                    g_page = gr.Number(1, precision=0, label="page", minimum=1)
                gallery_info = gr.Markdown(elem_id="gallery-info")
                with gr.Row():
                    with gr.Column(scale=3):
                        gallery = gr.Gallery(label="aligned faces (click to select)", columns=4, height=640,
                                             allow_preview=False, object_fit="contain", elem_id="face-gallery")
                    with gr.Column(scale=2):
                        frame_view = gr.Image(label="the selected face on its original frame", interactive=False,
                                              elem_id="frame-view")
                        face_info = gr.Markdown()
                shown_state = gr.State([])
                with gr.Row():
                    selected = gr.Dropdown([], value=[], multiselect=True, allow_custom_value=True,
                                           label="selected faces", scale=3, elem_id="selected-faces")
                    trash_btn = gr.Button("Move selected to trash", variant="stop", scale=1)
                    restore_btn = gr.Button("Restore trash", scale=1)
                    ref_from_face_btn = gr.Button("Use selected face as reference", scale=1)
                with gr.Accordion("Sort the folder and trash rejects (renames files, like `workbench sort`)",
                                  open=False):
                    with gr.Row():
                        s_method = gr.Dropdown(["blur", "motion-blur", "yaw", "pitch", "face-size", "brightness",
                                                "hue", "source", "mask-vs-hull", "hist", "best"], value="blur", label="method")
                        s_keep = gr.Number(None, precision=0, label="keep the first N (required for best)")
                        s_min = gr.Number(None, label="trash faces scoring below")
                        sort_btn = gr.Button("Sort and trash rejects")

            # ---------------------------------------------------------------------------- Segment
            with gr.Tab("2b · Segment", id="tab-segment") as segment_tab:
                tab_segment.build(ctx, root_state, segment_tab, _wire, texts.SEGMENT)

            # ---------------------------------------------------------------------------- Train
            with gr.Tab("3 · Train", id="tab-train") as train_tab:
                gr.Markdown(texts.TRAIN, elem_classes=["learn"])
                with gr.Row():
                    run = gr.Dropdown([], value=None, allow_custom_value=True, label="run (pick, or type a new name)",
                                      elem_id="run-name")
                    preset = gr.Dropdown(list(PRESETS), value="tiny", label="preset",
                                         info="tiny: minutes on a CPU; quick: DFL Quick96; saehd: DFL SAEHD")
                    max_steps = gr.Number(None, precision=0, label="stop this session after N steps (empty = never)")
                option_comps: dict[str, Any] = {}
                specs = tab_train.option_specs()
                tiny = PRESETS["tiny"].to_dict()

                def add_options(names: tuple[str, ...]) -> None:
                    for i in range(0, len(names), 4):
                        with gr.Row():
                            for name in names[i:i + 4]:
                                option_comps[name] = _option_component(specs[name], tiny.get(name, specs[name].default))

                with gr.Accordion("Model and optimiser", open=True):
                    add_options(MAIN_OPTIONS)
                with gr.Accordion("Augmentation and losses", open=False):
                    add_options(AUGMENT_OPTIONS)
                with gr.Accordion("All other options", open=False):
                    add_options(tuple(n for n in specs if n not in MAIN_OPTIONS + AUGMENT_OPTIONS))
                with gr.Row():
                    start_btn = gr.Button("Start / resume training", variant="primary", elem_id="start-btn")
                    train_job_btn = gr.Button("Run as a job", elem_id="train-job-btn")
                    pause_btn = gr.Button("Pause", elem_id="pause-btn")
                    resume_btn = gr.Button("Resume", elem_id="resume-btn")
                    save_btn = gr.Button("Save now")
                    preview_btn = gr.Button("Preview now")
                    stop_btn = gr.Button("Stop", variant="stop", elem_id="stop-btn")
                train_status = gr.Markdown(elem_id="train-action")
                with gr.Row():
                    train_step = gr.Markdown("Step —", elem_id="train-step")
                    live_status = gr.Markdown("No run selected.", elem_id="train-status")
                with gr.Row():
                    with gr.Column(scale=3):
                        # no label badge: it would cover the grid's column labels
                        preview = gr.Image(label="preview (refreshes while training runs)", show_label=False,
                                           interactive=False, elem_id="train-preview", format="png", height=520)
                        preview_info = gr.Markdown(elem_id="preview-info")
                        gr.Markdown(texts.PREVIEW, elem_classes=["learn"])
                    with gr.Column(scale=2):
                        empty = tab_train.metrics_plots([])
                        loss_plot = gr.Image(empty["loss_plot"], label="training loss", interactive=False,
                                             elem_id="loss-plot", format="png")
                        identity_plot = gr.Image(empty["identity_plot"], label="looks like the source",
                                                 interactive=False, elem_id="identity-plot", format="png")
                        metrics_plot = gr.Image(empty["metrics_plot"], label="held-out SSIM", interactive=False,
                                                elem_id="metrics-plot", format="png")
                        psnr_plot = gr.Image(empty["psnr_plot"], label="held-out PSNR", interactive=False,
                                             elem_id="psnr-plot", format="png")
                train_seen = gr.State({})
                with gr.Accordion("Inside the model: latent space", open=False):
                    gr.Markdown(texts.LATENT, elem_classes=["learn"])
                    with gr.Row():
                        face_a = gr.Dropdown([], label="face A", elem_id="face-a", allow_custom_value=True)
                        face_b = gr.Dropdown([], label="face B", elem_id="face-b", allow_custom_value=True)
                        steps = gr.Slider(2, 12, value=6, step=1, label="interpolation steps")
                        decoder = gr.Radio(["src", "dst"], value="src", label="decoder")
                    with gr.Row():
                        recon_btn = gr.Button("Reconstruct face A with both decoders")
                        interp_btn = gr.Button("Interpolate A → B")
                    latent_image = gr.Image(label="latent panel", interactive=False, elem_id="latent-image")

            # ---------------------------------------------------------------------------- Merge
            with gr.Tab("4 · Merge", id="tab-merge") as merge_tab:
                gr.Markdown(texts.MERGE, elem_classes=["learn"])
                with gr.Row():
                    # lists refilled by callbacks accept any value: a value from the previous project or page state must not
                    # raise a raw Gradio error; every callback checks the names it gets (plain names inside the project)
                    merge_run = gr.Dropdown([], label="model (a training run, or a DFM/ONNX file in the project)",
                                            elem_id="merge-run", allow_custom_value=True)
                    merge_upload = gr.UploadButton("Upload a DFM/ONNX model", file_types=[".dfm", ".onnx"],
                                                   type="filepath", size="sm", scale=0, elem_id="merge-upload")
                    frame = gr.Slider(0, 1, value=0, step=1, label="frame", elem_id="frame-slider")
                merge_info = gr.Markdown(elem_id="merge-info")
                with gr.Row():
                    with gr.Column(scale=3):
                        merged = gr.Image(label="merged frame", interactive=False, elem_id="merged-frame")
                    with gr.Column(scale=2):
                        merged_face = gr.Image(label="the face, zoomed", interactive=False, elem_id="merged-face",
                                               height=320)
                        mask = gr.Image(label="the mask used for blending", interactive=False, elem_id="merge-mask",
                                        image_mode="L")
                setting_comps: dict[str, Any] = {}
                fields_ = tab_merge.merge_fields()
                for i in range(0, len(fields_), 4):
                    with gr.Row():
                        for name, default in fields_[i:i + 4]:
                            setting_comps[name] = _setting_component(name, default, FIELD_HELP.get(name, ""))
                smoothing = gr.Slider(0, 1, value=0, step=0.05, label="temporal smoothing (merge all frames)",
                                      info="Smooth the face landmarks over time before merging: less jitter on "
                                           "steady shots (0 = off). The single-frame preview does not apply it.")
                with gr.Row():
                    grid_btn = gr.Button("Show every colour transfer", elem_id="grid-btn")
                    load_btn = gr.Button("Load saved settings of this frame")
                    save_default_btn = gr.Button("Save as project default")
                    merge_all_btn = gr.Button("Save these settings as default and merge all frames", variant="primary",
                                              elem_id="merge-all-btn")
                    merge_job_btn = gr.Button("Save as default and merge all as a job", elem_id="merge-job-btn")
                merge_status = gr.Markdown(elem_id="merge-status")
                color_grid = gr.Image(label="the same frame under every colour transfer", interactive=False,
                                      elem_id="color-grid")
                gr.Markdown(texts.OVERRIDES, elem_classes=["learn"])
                overrides = gr.Dataframe(headers=["#", "from frame", "to frame", "changes"], value=[],
                                         interactive=False, elem_id="overrides")
                with gr.Row():
                    ov_from = gr.Number(0, precision=0, label="from frame")
                    ov_to = gr.Number(-1, precision=0, label="to frame (-1 = end)")
                    ov_add = gr.Button("Save these settings for the range")
                    ov_number = gr.Number(1, precision=0, label="override #")
                    ov_remove = gr.Button("Remove override")

            # ---------------------------------------------------------------------------- Export
            with gr.Tab("5 · Export", id="tab-export") as export_tab:
                gr.Markdown(texts.EXPORT, elem_classes=["learn"])
                with gr.Row():
                    export_name = gr.Textbox(tab_export.default_export_name(root), label="file name (in output/)",
                                             elem_id="export-name")
                    export_label = gr.Checkbox(True, label="visible SYNTHETIC label",
                                               info="recommended; the provenance metadata is written either way")
                    export_overwrite = gr.Checkbox(False, label="overwrite an existing file")
                    export_crf = gr.Slider(0, 51, value=18, step=1, label="quality (CRF, lower is better)")
                with gr.Row():
                    export_btn = gr.Button("Export video", variant="primary", elem_id="export-btn")
                    export_job_btn = gr.Button("Export as a job", elem_id="export-job-btn")
                export_status = gr.Markdown(elem_id="export-status")
                with gr.Row():
                    with gr.Column(scale=3):
                        video = gr.Video(label="exported video", interactive=False, elem_id="export-video")
                        download = gr.DownloadButton("Download the video", visible=False, elem_id="export-download")
                    with gr.Column(scale=2):
                        exports = gr.Dropdown([], label="exported videos", elem_id="exports", allow_custom_value=True)
                        provenance = gr.JSON(label="provenance metadata (read back from the file)",
                                             elem_id="provenance")
                        export_eval = gr.Markdown(elem_id="export-evaluation")

            live_sessions = live_tab.LiveSessions()  # one per app: the tab, /live and the frame endpoint share it
            live_tab.build_live_tab(ctx, live_sessions, root_state, setting_comps, _wire)  # 6 · Live + model export
            build_jobs_tab(_wire, root_state)

        timer = gr.Timer(poll_seconds)

        # ------------------------------------------------------------------------------------ wiring
        R = {"root": root_state}
        option_inputs = {"options": option_comps}
        settings_inputs = {"settings": setting_comps}
        opt_out = {f"opt:{k}": c for k, c in option_comps.items()}
        set_out = {f"set:{k}": c for k, c in setting_comps.items()}
        gallery_out = {"gallery": gallery, "shown": shown_state, "selected": selected, "gallery_info": gallery_info,
                       "page": g_page, "gallery_side": g_side}
        overview_out = {"overview": overview, "src_media": src_media, "dst_media": dst_media}
        load_out = {
            "project_label": project_label, "project_list": project_list, **overview_out,
            "face_type": ex_face_type, "face_size": ex_size, "reference": ex_reference, **gallery_out,
            "run": run, **opt_out, "train_seen": train_seen, "train_status_note": train_status,
            "face_a": face_a, "face_b": face_b, "merge_run": merge_run, "frame": frame, "overrides": overrides,
            "merge_info": merge_info, **set_out, "temporal_smoothing": smoothing, "exports": exports,
            "export_name": export_name,
        }
        load = partial(page.on_load, ctx)
        load.__name__ = "on_load"  # type: ignore[attr-defined]
        _wire(demo.load, load, R, load_out)

        # project tab
        project_out = {"root": root_state, "status": project_status, "project_label": project_label,
                       "project_list": project_list, **overview_out}
        opened = _wire(open_btn.click, partial(tab_project.open_project, ctx), {"name": project_list}, project_out)
        _wire(opened.then, load, R, load_out)
        created = _wire(create_btn.click, partial(tab_project.create_project, ctx),
                        {"name": new_name, "face_type": new_face_type, "face_size": new_face_size}, project_out)
        _wire(created.then, load, R, load_out)
        for side, upload, picker in (("src", src_upload, src_media), ("dst", dst_upload, dst_media)):
            _wire(upload.upload, partial(tab_project.upload_media, ctx, side=side), {**R, "upload": upload},
                  {"status": project_status, "upload": upload, **overview_out})
            _wire(picker.input, partial(tab_project.pick_media, side=side), {**R, "name": picker},
                  {"status": project_status, **overview_out})
        _wire(refresh_btn.click, tab_project.project_overview, R, overview_out)

        # extract tab
        extract_inputs = {**R, "side": ex_side, "engine": ex_engine, "face_type": ex_face_type, "face_size": ex_size,
                          "target": ex_target, "reference": ex_reference, "reference_threshold": ex_threshold,
                          "every_nth": ex_every, "smoothing": ex_smoothing, "workers": ex_workers}
        _wire(extract_btn.click, tab_extract.run_extraction, extract_inputs,
              {"status": extract_status, **gallery_out, **overview_out}, progress=True, concurrency_id="heavy",
              show_progress_on=[extract_status])
        wire_run_as_job(_wire, extract_job_btn, extract_as_job, extract_inputs, extract_status)
        view_inputs = {**R, "side": g_side, "order": g_order, "show_landmarks": g_landmarks, "show_mask": g_mask,
                       "page": g_page}
        _wire([g_order.input, g_landmarks.input, g_mask.input, g_page.submit, extract_tab.select],
              tab_curate.face_gallery, {**view_inputs, "selected": selected}, {"status": extract_status, **gallery_out},
              trigger_mode="always_last")
        # a selection belongs to one faceset: switching faceset clears it (src and dst files share names)
        _wire(g_side.input, tab_curate.face_gallery, view_inputs, {"status": extract_status, **gallery_out},
              trigger_mode="always_last")
        _wire(gallery.select, tab_curate.select_face,
              {**R, "side": g_side, "shown": shown_state, "selected": selected, "show_crop": g_crop,
               "show_landmarks": g_landmarks},
              {"status": extract_status, "selected": selected, "frame_view": frame_view, "face_info": face_info},
              select=True)
        _wire(trash_btn.click, tab_curate.trash_faces, {**view_inputs, "selected": selected},
              {"status": extract_status, **gallery_out, **overview_out})
        _wire(restore_btn.click, tab_curate.restore_trash, view_inputs, {"status": extract_status, **gallery_out,
                                                                   **overview_out})
        _wire(sort_btn.click, tab_curate.apply_sort,
              {**R, "side": g_side, "method": s_method, "keep": s_keep, "min_score": s_min,
               "show_landmarks": g_landmarks, "show_mask": g_mask},
              {"status": extract_status, **gallery_out, **overview_out}, progress=False, concurrency_id="heavy")
        _wire(ref_upload.upload, partial(tab_extract.upload_reference, ctx), {**R, "upload": ref_upload},
              {"status": extract_status, "reference": ex_reference, "upload": ref_upload})
        _wire(ref_from_face_btn.click, tab_extract.reference_from_face, {**R, "side": g_side, "selected": selected},
              {"status": extract_status, "reference": ex_reference})

        # train tab
        _wire(preset.input, tab_train.preset_options, {"preset_name": preset}, {"status": train_status, **opt_out})
        _wire(run.input, tab_train.run_options, {**R, "run": run}, {"status": train_status, "train_seen": train_seen,
                                                             **opt_out})
        _wire(start_btn.click, tab_train.start_training, {**R, "run": run, **option_inputs, "max_steps": max_steps},
              {"status": train_status, "run": run, "train_seen": train_seen})
        wire_run_as_job(_wire, train_job_btn, train_as_job, {**R, "run": run, **option_inputs, "max_steps": max_steps},
                        train_status)
        for btn, command in ((pause_btn, "pause"), (resume_btn, "resume"), (save_btn, "save"),
                             (preview_btn, "preview"), (stop_btn, "stop")):
            _wire(btn.click, partial(tab_train.control_training, command=command), {**R, "run": run},
                  {"status": train_status})
        _wire(timer.tick, tab_train.poll_training, {**R, "run": run, "seen": train_seen, "note": train_status},
              {"train_step": train_step, "train_status": live_status, "note": train_status, "preview": preview,
               "preview_info": preview_info, "loss_plot": loss_plot, "metrics_plot": metrics_plot,
               "psnr_plot": psnr_plot, "identity_plot": identity_plot, "train_seen": train_seen}, show_progress="hidden", trigger_mode="once", queue=True)
        _wire(train_tab.select, page.refresh_lists, R, {"face_a": face_a, "face_b": face_b, "run": run})
        _wire(recon_btn.click, partial(tab_train.latent_reconstruct, ctx), {**R, "run": run, "face": face_a},
              {"status": train_status, "latent_image": latent_image}, concurrency_id="model")
        _wire(interp_btn.click, partial(tab_train.latent_interpolate, ctx),
              {**R, "run": run, "face_a": face_a, "face_b": face_b, "steps": steps, "decoder": decoder},
              {"status": train_status, "latent_image": latent_image}, concurrency_id="model")

        # merge tab
        merge_view_out = {"status": merge_status, "merged": merged, "merged_face": merged_face, "mask": mask,
                          "merge_info": merge_info}
        merge_inputs = {**R, "run": merge_run, "frame_pos": frame, **settings_inputs}
        _wire(merge_tab.select, tab_merge.merge_refresh, {**R, "run": merge_run},
              {"merge_run": merge_run, "frame": frame, "merge_info": merge_info})
        _wire([merge_run.change, frame.change] + [c.change for c in setting_comps.values()],
              partial(tab_merge.render_merge_frame, ctx), merge_inputs, merge_view_out, trigger_mode="always_last",
              show_progress="hidden", concurrency_id="model")
        _wire(merge_upload.upload, partial(tab_merge.upload_model_file, ctx),
              {**R, "upload": merge_upload}, {"merge_run": merge_run, "status": merge_status})
        _wire(grid_btn.click, partial(tab_merge.color_variants, ctx), merge_inputs,
              {"status": merge_status, "color_grid": color_grid}, concurrency_id="model")
        _wire(load_btn.click, tab_merge.load_frame_settings, {**R, "frame_pos": frame}, {"status": merge_status, **set_out})
        _wire(save_default_btn.click, tab_merge.save_merge_default, {**R, **settings_inputs, "temporal_smoothing": smoothing},
              {"status": merge_status, "overrides": overrides})
        _wire(ov_add.click, tab_merge.add_override, {**R, "start": ov_from, "stop": ov_to, **settings_inputs},
              {"status": merge_status, "overrides": overrides})
        _wire(ov_remove.click, tab_merge.remove_override, {**R, "number": ov_number},
              {"status": merge_status, "overrides": overrides})
        _wire(merge_all_btn.click, partial(tab_merge.merge_all, ctx),
              {**R, "run": merge_run, **settings_inputs, "temporal_smoothing": smoothing},
              {"status": merge_status, **overview_out}, progress=True, concurrency_id="heavy",
              show_progress_on=[merge_status])
        wire_run_as_job(_wire, merge_job_btn, merge_as_job,
                        {**R, "run": merge_run, **settings_inputs, "temporal_smoothing": smoothing}, merge_status)

        # export tab
        _wire(export_tab.select, page.refresh_lists, R, {"exports": exports})
        export_out = {"status": export_status, "video": video, "download": download, "provenance": provenance,
                      "exports": exports, "evaluation": export_eval, **overview_out}
        _wire(export_btn.click, tab_export.export_video_cb,
              {**R, "name": export_name, "run": merge_run, "label": export_label, "overwrite": export_overwrite,
               "crf": export_crf}, export_out, progress=True, concurrency_id="heavy",
              show_progress_on=[export_status])
        wire_run_as_job(_wire, export_job_btn, export_as_job,
                        {**R, "name": export_name, "label": export_label, "overwrite": export_overwrite,
                         "crf": export_crf}, export_status)
        _wire(exports.input, tab_export.show_export, {**R, "name": exports}, export_out)

    live_tab.build_live_page(ctx, live_sessions, demo, root, _wire)  # /live: the live view on a page of its own

    def served(new_root: Path) -> None:
        if str(new_root) not in demo.allowed_paths:
            demo.allowed_paths.append(str(new_root))

    ctx.on_project_opened = served
    demo.queue(default_concurrency_limit=1)  # one run per event at a time; heavy jobs share "heavy"
    demo.workbench_context = ctx  # type: ignore[attr-defined]
    return demo


def launch_options(demo: gr.Blocks) -> dict[str, Any]:
    """The security-relevant ``launch()`` arguments for a page built by :func:`build_app`."""
    ctx: context.AppContext = demo.workbench_context  # type: ignore[attr-defined]
    return {"allowed_paths": list(ctx.served_roots), "max_file_size": f"{ctx.max_upload_mb}mb", "css": CSS,
            "show_error": False, "footer_links": ["gradio"]}


def launch_app(project_root: str | Path | None = None, *, host: str = "127.0.0.1", port: int | None = None,
               share: bool = False, workspace: str | Path | None = None,
               max_upload_mb: int = DEFAULT_MAX_UPLOAD_MB, prevent_thread_lock: bool = False,
               inbrowser: bool = False) -> gr.Blocks:
    """Build and serve the app. Binds ``host`` (127.0.0.1 by default); ``share`` only when asked explicitly.

    Gradio's upload/cache folder is put inside the project (``PROJECT/.app_cache``) unless
    ``GRADIO_TEMP_DIR`` is already set, so uploads never land outside the project folder.
    """
    if project_root and not os.environ.get("GRADIO_TEMP_DIR"):
        cache = Project.open(project_root).root / ".app_cache"
        cache.mkdir(exist_ok=True)
        os.environ["GRADIO_TEMP_DIR"] = str(cache)
    demo = build_app(project_root, workspace=workspace, max_upload_mb=max_upload_mb)
    demo.launch(server_name=host, server_port=port, share=bool(share), inbrowser=inbrowser, quiet=True,
                prevent_thread_lock=True, **launch_options(demo))
    print(f"Face-Swap Workbench on {demo.local_url}" + (f" and {demo.share_url}" if demo.share_url else "")
          + (" (Ctrl-C to stop; training runs keep going)" if not prevent_thread_lock else ""), flush=True)
    if not prevent_thread_lock:
        demo.block_thread()
    return demo
