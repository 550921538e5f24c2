"""Live tab: the browser webcam streams into :class:`workbench.live.LiveSwapper`; plus exporting a model as DFM/ONNX.

The callbacks are plain functions (testable without a browser); :func:`build_live_tab` lays out the tab inside the
page's ``gr.Tabs`` and wires it with the page's ``wire`` adapter. Per browser session a :class:`LiveSession`
(held in a ``gr.State``) keeps the swapper for the chosen model and the recorder; nothing is stored unless the
user presses record, and a recording is written by the normal export (provenance tags + visible label).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ExportError, MergeError, WorkbenchError
from ..project import Project
from .common import MODEL_FILE_PREFIX, _project, _run_dir, _safe_file_name, error_text, guarded, is_model_file
from .context import AppContext

RUN_PREFIX = "run: "
STREAM_EVERY = 0.05  # seconds between webcam frames sent by the page (the server drops what it cannot keep up with)

LIVE_TEXT = """**What is happening here?** Your webcam frames go to the workbench on this machine (never anywhere
else). For each frame the face is found (a full detection only every few frames: in between the 68 landmarks are
re-fitted where the face was a moment ago, which is much cheaper), aligned, swapped by the chosen model and
merged back with the **Merge tab's current settings**. This is how real-time tools such as DeepFaceLive work,
and why a live swap looks convincing from the front and breaks when you turn your head or cover your face: the
model only knows what it saw in training. The **SYNTHETIC** label is always drawn. Nothing is recorded unless you
press *Record*; a recording is saved to `output/` with the same label and provenance metadata as every export.
Use only your own face or faces of people who consented."""

EXPORT_TEXT = """**Share the model.** Export the selected training run as a DeepFaceLab **DFM** file (read by
DeepFaceLive, FaceFusion's deep swapper and VisoMaster) or as a plain **ONNX** file with readable names and the
model's facts in its metadata. Either can be picked above as the live model, or used with
`workbench merge PROJECT --model output/<run>.dfm`."""


def live_model_choices(root: str | None) -> list[str]:
    """Models the live tab can run: training runs with a checkpoint, and DFM/ONNX files in the project."""
    from .tab_merge import merge_run_choices

    if not root:
        return []
    from ..export_model import find_model_files

    choices = [RUN_PREFIX + name for name in reversed(merge_run_choices(root))]
    project = Project.open(root)
    return choices + [MODEL_FILE_PREFIX + project.relative(path) for path in find_model_files(project)]


def load_live_model(ctx: AppContext, project: Project, choice: str) -> tuple[Any, str]:
    """The predictor for a model choice, and a description for provenance.

    Raises:
        MergeError: nothing chosen or an unknown choice; ExportError / TrainingError from loading.
    """
    from ..export_model import load_onnx_predictor
    from .tab_merge import model_file_path

    if not choice:
        raise MergeError("no model selected", hint="train a run, or export/copy a .dfm file into output/")
    if choice.startswith(RUN_PREFIX):
        run_dir = _run_dir(project, choice[len(RUN_PREFIX):])
        return ctx.predictor(run_dir), f"run {run_dir.name}"
    if is_model_file(choice):
        path = model_file_path(project, choice)  # the Merge tab's rule: inside the project, .dfm/.onnx, present
        return load_onnx_predictor(path, threads=1), f"model file {path.name}"
    raise MergeError(f"unknown model choice {choice!r}", hint="pick one from the list")


@dataclass
class LiveSession:
    """One browser session's live state: what the page chose (set by :func:`live_configure`, so each streamed frame
    carries only the picture), the swapper for the chosen model and the recorder."""

    key: tuple = ()
    swapper: Any = None
    description: str = ""
    recorder: Any = None
    started: float = field(default_factory=time.monotonic)
    detections: int = 0
    frames: int = 0
    root: str | None = None
    model: str | None = None
    side_by_side: bool = False
    settings: Any = None  # MergeSettings from the Merge tab's form
    error: str | None = None  # why the chosen model could not be loaded


class LiveSessions:
    """The live sessions of one app, by a random key the page keeps in a ``gr.State`` (the session itself holds
    an onnxruntime session and a model, which Gradio's state store would deep-copy on every frame). At most
    ``size`` sessions are kept; the least recently used is dropped."""

    def __init__(self, size: int = 4):
        from .context import _LRU

        self._lru = _LRU(size)
        self._lock = threading.Lock()

    def find(self, key: str | None) -> LiveSession | None:
        """The session of ``key``, or None (a frame never creates a session: :meth:`get` does, when the page
        configures one)."""
        with self._lock:
            return self._lru.get(key) if key else None

    def get(self, key: str | None) -> tuple[str, LiveSession]:
        from ..live import LiveRecorder

        with self._lock:
            session = self._lru.get(key) if key else None
            if session is None:
                key = uuid.uuid4().hex
                session = self._lru.put(key, LiveSession(recorder=LiveRecorder()))
            return str(key), session


def _stats_html(session: LiveSession, result: Any, received_ms: float, recording: bool) -> str:
    sw = session.swapper
    rec = " · <b>● recording</b>" if recording else ""
    return (f'<div id="live-timing" data-received="{received_ms:.1f}" data-frame="{session.frames}" '
            f'data-processing="{result.timings_ms["total"]:.1f}">'
            f"<b>{sw.fps:.1f} fps</b> · processing {sw.latency_ms:.0f} ms per frame "
            f"(track {result.timings_ms['track']:.0f}, swap {result.timings_ms['swap']:.0f}) · "
            f"faces {result.faces} · full detections {getattr(sw.tracker, 'detections', '?')} in {session.frames} "
            f"frames{rec}</div>")


def _load_swapper(ctx: AppContext, session: LiveSession) -> None:
    """(Re)build the session's swapper when the project, model or layout changed (raises WorkbenchError)."""
    from ..live import LiveOptions, LiveSwapper

    project = _project(session.root)
    key = (str(project.root), session.model, bool(session.side_by_side))
    if session.key != key or session.swapper is None:
        predictor, description = load_live_model(ctx, project, session.model)
        session.swapper = LiveSwapper(predictor, options=LiveOptions(side_by_side=bool(session.side_by_side)))
        session.key, session.description, session.frames = key, description, 0
    if session.settings is not None:
        session.swapper.set_settings(session.settings)
        # an xseg-* mask mode: the project's XSeg model (cached per checkpoint; TrainingError when untrained)
        from .tab_merge import _segmenter

        session.swapper.segment = _segmenter(ctx, project, session.settings.needs_segmenter)


def live_configure(ctx: AppContext, sessions: LiveSessions, root: str | None, model: str | None,
                   side_by_side: bool, settings: Mapping[str, Any] | None, session_key: str | None) -> dict[str, Any]:
    """Store the page's choices (project, model, side by side, the Merge tab's settings) in the live session and
    load the model now, off the frame path. Called when any of them changes, not per frame: a streamed frame
    then carries only the picture and the session key, which keeps the browser's per-frame work small.
    ``settings`` None: the project's saved merge settings (``merge.json``; the stand-alone live page)."""
    from .tab_merge import _merge_config, _settings

    key, session = sessions.get(session_key)
    out: dict[str, Any] = {"live_key": key}
    session.root, session.model, session.side_by_side = root, model, bool(side_by_side)
    session.error = None
    try:
        if settings is not None:
            session.settings = _settings(settings)
        elif root:
            session.settings = _merge_config(_project(root)).default
        if root and model:
            _load_swapper(ctx, session)
            out["live_stats"] = (f'<div id="live-message">Model: {session.description}. Start the webcam (or keep '
                                 'it running).</div>')
    except WorkbenchError as exc:
        session.error = error_text(exc)
        out["live_stats"] = f'<div id="live-message">⚠️ {session.error}</div>'
    return out


def live_frame(ctx: AppContext, sessions: LiveSessions, frame: np.ndarray | None,
               session_key: str | None) -> dict[str, Any]:
    """Process one webcam frame with the session's choices (:func:`live_configure`).

    Returns ``{"live_out": html}``: the swapped frame and the stats line in one piece of HTML, or a message. One
    output per frame on purpose: Gradio's page does work per output component and event (status, tree lookups)
    that, on a large page, costs the browser more than the swap costs the server.
    """
    from ..live import resize_for_live

    received_ms = time.time() * 1000.0
    if frame is None:
        return {}
    session = sessions.find(session_key)
    try:
        if session is None or not session.root or not session.model:
            raise MergeError((session.error if session else None) or "no model selected",
                             hint="pick a model above (a training run, or a DFM/ONNX file of the project)")
        _load_swapper(ctx, session)
        rgb = resize_for_live(np.asarray(frame)[..., :3].astype(np.uint8, copy=False))
        result = session.swapper.process(rgb)
        session.frames += 1
        recorder = session.recorder
        if recorder.recording and not recorder.add(result.swapped, time.monotonic()):
            recorder.stop()
        return {"live_out": view_html(result.image) + _stats_html(session, result, received_ms, recorder.recording)}
    except WorkbenchError as exc:
        return {"live_out": f'<div id="live-timing">⚠️ {error_text(exc)}</div>'}


VIEW_JPEG_QUALITY = 85


def view_html(image: np.ndarray, quality: int = VIEW_JPEG_QUALITY) -> str:
    """The displayed frame as an ``<img>`` with the JPEG inline (a data URL).

    Why not a ``gr.Image`` output: Gradio saves each output picture to its cache and sends a URL, so the page
    needs a second HTTP round trip before it can decode the frame; inline, the picture arrives in the same
    server-sent event as the stats (measured in the browser test: see the README's Live section).
    """
    import base64

    import cv2

    ok, data = cv2.imencode(".jpg", np.ascontiguousarray(image[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ExportError("could not encode the live frame as JPEG")
    h, w = image.shape[:2]
    return (f'<img class="live-frame" alt="swapped webcam frame (SYNTHETIC)" width="{w}" height="{h}" '
            f'style="max-width:100%;height:auto" src="data:image/jpeg;base64,{base64.b64encode(data).decode()}"/>')


def start_recording(sessions: LiveSessions, session_key: str | None) -> dict[str, Any]:
    key, session = sessions.get(session_key)
    session.recorder.start()
    return {"live_key": key, "live_record_status": "● Recording: frames are kept in memory until you press "
            "*Stop and save* (at most 60 s)."}


@guarded
def stop_recording(sessions: LiveSessions, root: str, session_key: str | None) -> dict[str, Any]:
    """Save what was recorded with the normal export (label + provenance) into ``output/``."""
    key, session = sessions.get(session_key)
    project = _project(root)
    if not session.recorder.recording and not session.recorder.frames:
        return {"status": "Nothing is being recorded.", "live_key": key}
    name = _safe_file_name(time.strftime("live_%Y%m%d_%H%M%S.mp4", time.gmtime()))
    path = session.recorder.save(project.output_dir / name, session.description or "live model")
    return {"status": f"Saved `{project.relative(path)}` with the SYNTHETIC label and provenance metadata "
                      "(see the Export tab).", "live_key": key}


@guarded
def export_model_cb(root: str, run: str | None, fmt: str, overwrite: bool = False) -> dict[str, Any]:
    """Export a run as DFM/ONNX into ``output/<run>.<fmt>`` (as ``workbench export-model``)."""
    from ..export_model import default_output, export_run, load_onnx_predictor

    project = _project(root)
    if not run:
        raise MergeError("no training run selected", hint="pick a run with a checkpoint")
    run_dir = _run_dir(project, run)
    if fmt not in ("dfm", "onnx"):
        raise ExportError(f"unknown model format {fmt!r}", hint="dfm or onnx")
    out = default_output(project.output_dir, run_dir.name, fmt)
    if out.exists() and not overwrite:
        raise ExportError("the file exists", out, "tick overwrite to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    export_run(run_dir, out, fmt)
    info = load_onnx_predictor(out, threads=1).info
    return {"status": f"Wrote `{project.relative(out)}` ({out.stat().st_size / 1e6:.1f} MB): {info.architecture}, "
                      f"{info.resolution} px, face type {info.face_type}, step {info.step}; it loads in onnxruntime.",
            "live_model": _choices_update(root, MODEL_FILE_PREFIX + project.relative(out))}


def _choices_update(root: str | None, value: str | None = None) -> Any:
    import gradio as gr

    choices = live_model_choices(root)
    if value is None or value not in choices:
        value = choices[0] if choices else None
    return gr.update(choices=choices, value=value)


def refresh_live(root: str | None, model: str | None = None) -> dict[str, Any]:
    return {"live_model": _choices_update(root, model)}


def refresh_export_runs(root: str | None) -> dict[str, Any]:
    import gradio as gr

    from .tab_merge import merge_run_choices

    runs = list(reversed(merge_run_choices(root))) if root else []
    return {"export_run": gr.update(choices=runs, value=runs[0] if runs else None)}


def _live_view(ctx: AppContext, root_state: Any, setting_comps: Mapping[str, Any] | None, wire: Callable[..., Any],
               triggers: list[Any], load: Any = None) -> dict[str, Any]:
    """Lay out and wire the live controls (model, side by side, webcam, output, record) where the caller is.

    ``setting_comps``: the Merge tab's setting components (the tab), or None (the stand-alone page: the project's
    saved merge settings are used). ``triggers``: events that refresh the model list and configure the session
    (the tab's select); ``load``: the page's load event (refreshes the list; setting the model configures).
    Returns the components the caller wires further.
    """
    import gradio as gr

    with gr.Row():
        model = gr.Dropdown([], label="model (a training run, or a DFM/ONNX file in the project)",
                            elem_id="live-model", allow_custom_value=False)
        sbs = gr.Checkbox(False, label="side by side: original | swapped", elem_id="live-sbs")
        refresh = gr.Button("Refresh models", size="sm", scale=0)
    with gr.Row():
        cam = gr.Image(sources=["webcam"], streaming=True, type="numpy", label="webcam (stays on this machine)",
                       elem_id="live-cam", webcam_options=gr.WebcamOptions(
                           mirror=True, constraints={"video": {"width": 640, "height": 480}}))
        out = gr.HTML('<div class="live-empty">the swapped frames (SYNTHETIC) appear here</div>',
                      label="swapped (SYNTHETIC)", elem_id="live-out")
    stats = gr.HTML('<div id="live-message">pick a model, then start the webcam</div>', elem_id="live-stats")
    with gr.Row():
        rec = gr.Button("● Record to file", elem_id="live-record")
        stop = gr.Button("■ Stop and save", elem_id="live-stop")
    rec_status = gr.Markdown(elem_id="live-record-status")
    session = gr.State(None)  # the key of this page's LiveSession

    sessions = LiveSessions()
    root = {"root": root_state}
    wire(triggers + [refresh.click], refresh_live, {**root, "model": model}, {"live_model": model})
    if load is not None:
        wire(load, refresh_live, {**root, "model": model}, {"live_model": model})
    choices: dict[str, Any] = {**root, "model": model, "side_by_side": sbs, "session_key": session}
    if setting_comps is not None:
        choices["settings"] = dict(setting_comps)
        configure = partial(live_configure, ctx, sessions)
    else:  # the stand-alone page: the project's saved settings
        configure = partial(live_configure, ctx, sessions, settings=None)
    wire(triggers + [model.change, sbs.change] + [c.change for c in (setting_comps or {}).values()],
         configure, choices, {"live_key": session, "live_stats": stats}, show_progress="hidden")
    handler = _bind(ctx, sessions)
    wire(cam.stream, handler, {"frame": cam, "session_key": session}, {"live_out": out}, stream_every=STREAM_EVERY,
         time_limit=3600, concurrency_limit=1, concurrency_id="live", show_progress="hidden")
    wire(rec.click, partial(start_recording, sessions), {"session_key": session},
         {"live_key": session, "live_record_status": rec_status})
    wire(stop.click, partial(stop_recording, sessions), {**root, "session_key": session},
         {"status": rec_status, "live_key": session})
    return {"model": model, "status": rec_status}


LIVE_PAGE_PATH = "live"


def build_live_tab(ctx: AppContext, root_state: Any, setting_comps: Mapping[str, Any],
                   wire: Callable[..., Any]) -> Any:
    """Lay out the Live tab (inside the page's ``gr.Tabs``) and wire it; returns the tab."""
    import gradio as gr

    with gr.Tab("6 · Live", id="tab-live") as tab:
        gr.Markdown(LIVE_TEXT, elem_classes=["learn"])
        gr.Markdown(f"**Faster:** the same live view on its own page, [/{LIVE_PAGE_PATH}](/{LIVE_PAGE_PATH}) "
                    "(the project's saved merge settings). This page holds the whole workbench, and Gradio's "
                    "page does work for every one of its components on each streamed frame, which costs the "
                    "browser more than the swap costs the server.", elem_id="live-page-link")
        view = _live_view(ctx, root_state, setting_comps, wire, [tab.select])
        with gr.Accordion("Export the model (DFM / ONNX)", open=False):
            gr.Markdown(EXPORT_TEXT, elem_classes=["learn"])
            with gr.Row():
                export_run_dd = gr.Dropdown([], label="training run", elem_id="export-model-run")
                fmt = gr.Radio(["dfm", "onnx"], value="dfm", label="format", elem_id="export-model-format")
                overwrite = gr.Checkbox(False, label="overwrite")
                export_btn = gr.Button("Export model", elem_id="export-model-btn")

    root = {"root": root_state}
    wire(tab.select, refresh_export_runs, root, {"export_run": export_run_dd})
    wire(export_btn.click, export_model_cb, {**root, "run": export_run_dd, "fmt": fmt, "overwrite": overwrite},
         {"status": view["status"], "live_model": view["model"]}, concurrency_id="heavy")
    return tab


LIVE_PAGE_TEXT = """**Live face swap** of the Face-Swap Workbench: your webcam frames go to the workbench on this
machine (never anywhere else), the chosen model swaps the face and the project's **saved** merge settings
(Merge tab → *Save as project default*) blend it in. The **SYNTHETIC** label is always drawn; nothing is recorded
unless you press *Record*. Use only your own face or faces of people who consented. The full workbench, with the
Merge tab's live settings and model export, is at [/](/)."""


def build_live_page(ctx: AppContext, demo: Any, root: str | None, wire: Callable[..., Any]) -> None:
    """Add the stand-alone live page (``/live``) to the app: a small page, so the browser's per-frame work stays
    small (measured in the browser test: see the README's Live section)."""
    import gradio as gr

    from .tab_project import list_projects

    with demo.route("Live", f"/{LIVE_PAGE_PATH}"):
        gr.Markdown(LIVE_PAGE_TEXT, elem_classes=["learn"])
        projects = list_projects(ctx)
        current = Path(root).name if root else (projects[0] if projects else None)
        project = gr.Dropdown(projects, value=current, label="project", elem_id="live-project")
        root_state = gr.State(root or (str(ctx.workspace / current) if current else None))
        wire(project.change, partial(live_page_project, ctx), {"name": project}, {"root": root_state})
        _live_view(ctx, root_state, None, wire, [root_state.change], load=demo.load)


def live_page_project(ctx: AppContext, name: str | None) -> dict[str, Any]:
    """The live page's project: a project folder of the workspace, by name (as the Project tab opens it)."""
    from .tab_project import _workspace_child

    if not name:
        return {"root": None}
    try:
        return {"root": str(Project.open(_workspace_child(ctx, name)).root)}
    except WorkbenchError:
        return {"root": None}


def _bind(ctx: AppContext, sessions: LiveSessions) -> Callable[..., dict[str, Any]]:
    def live(**kwargs: Any) -> dict[str, Any]:
        return live_frame(ctx, sessions, **kwargs)

    live.__name__ = "live_frame"
    return live
