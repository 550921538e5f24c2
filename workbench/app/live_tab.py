"""Live tab: the browser webcam goes through :class:`workbench.live.LiveSwapper`; plus exporting a model as DFM/ONNX.

The callbacks are plain functions (testable without a browser); :func:`build_live_tab` lays out the tab inside the
page's ``gr.Tabs`` and wires it with the page's ``wire`` adapter. Per browser session a :class:`LiveSession`
(its key held in a ``gr.State``) keeps the swapper for the chosen model and the recorder; nothing is stored unless
the user presses record, and a recording is written by the normal export (provenance tags + visible label).

The frames themselves do not go through Gradio's event queue: the page's script (:data:`LIVE_JS`) grabs a webcam
frame, posts it as a JPEG to the unqueued endpoint ``gradio_api/run/live_jpeg`` (:func:`live_jpeg`), shows the
answer and sends the next frame, one in flight at a time. Gradio's streaming input made the page update the
loading state of every component on every frame, which on the full workbench page cost more than the swap.
"""

from __future__ import annotations

import html
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
from .common import MODEL_FILE_PREFIX, _project, _run_dir, _safe_file_name, guarded, is_model_file
from .context import AppContext

RUN_PREFIX = "run: "
MIN_FRAME_INTERVAL_S = 0.033  # the page sends at most ~30 frames/s (a webcam's rate), one frame in flight at a time
LIVE_API_NAME = "live_jpeg"
MAX_FRAME_DATA_URL = 8_000_000  # characters: a 640x480 JPEG is ~50 kB; more is not a webcam frame

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
    lock: threading.Lock = field(default_factory=threading.Lock)  # one frame at a time through the swapper


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
            f'data-processing="{result.timings_ms["total"]:.1f}" data-faces="{result.faces}">'
            f"<b>{sw.fps:.1f} fps</b> · processing {sw.latency_ms:.0f} ms per frame "
            f"(track {result.timings_ms['track']:.0f}, swap {result.timings_ms['swap']:.0f}) · "
            f"faces {result.faces} · full detections {getattr(sw.tracker, 'detections', '?')} in {session.frames} "
            f"frames{rec}</div>")


def _message_html(key: str, text: str, element_id: str = "live-message") -> str:
    """A message for the page; ``data-live-key`` tells the page's frame script which session its frames belong to."""
    return f'<div id="{element_id}" data-live-key="{html.escape(key)}">{html.escape(text)}</div>'


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
    session.root, session.model, session.side_by_side = root, model, bool(side_by_side)
    session.error = None
    message = "Pick a model, then start the webcam."
    try:
        if settings is not None:
            session.settings = _settings(settings)
        elif root:
            session.settings = _merge_config(_project(root)).default
        if root and model:
            with session.lock:  # not while a frame is going through the old swapper
                _load_swapper(ctx, session)
            message = f"Model: {session.description}. Start the webcam (or keep it running)."
    except WorkbenchError as exc:
        session.error = str(exc)  # message [path], hint: plain text
        message = f"⚠️ {session.error}"
    return {"live_key": key, "live_stats": _message_html(key, message)}


def live_frame(ctx: AppContext, sessions: LiveSessions, frame: np.ndarray | None,
               session_key: str | None) -> dict[str, Any]:
    """Process one webcam frame (RGB uint8) with the session's choices (:func:`live_configure`).

    Returns ``{"image": JPEG data URL or None, "stats": html}``: the swapped frame (SYNTHETIC label drawn) and the
    stats line, or no image and a message. A frame never creates a session: :func:`live_configure` does.
    """
    from ..live import resize_for_live

    received_ms = time.time() * 1000.0
    session = sessions.find(session_key)
    key = session_key or ""
    if frame is None:
        return {"image": None, "stats": _message_html(key, "⚠️ no webcam frame", "live-timing")}
    try:
        if session is None or not session.root or not session.model:
            raise MergeError((session.error if session else None) or "no model selected",
                             hint="pick a model above (a training run, or a DFM/ONNX file of the project)")
        rgb = resize_for_live(np.asarray(frame)[..., :3].astype(np.uint8, copy=False))
        with session.lock:
            _load_swapper(ctx, session)
            result = session.swapper.process(rgb)
            session.frames += 1
            recorder = session.recorder
            if recorder.recording and not recorder.add(result.swapped, time.monotonic()):
                recorder.stop()
            stats = _stats_html(session, result, received_ms, recorder.recording)
        return {"image": jpeg_data_url(result.image), "stats": stats}
    except WorkbenchError as exc:
        return {"image": None, "stats": _message_html(key, f"⚠️ {exc}", "live-timing")}


def live_jpeg(ctx: AppContext, sessions: LiveSessions, frame: str, session_key: str) -> dict[str, Any]:
    """The page's frame call: ``frame`` a JPEG/PNG data URL from the webcam, answered as :func:`live_frame`.

    Served unqueued at ``gradio_api/run/live_jpeg`` (see the module's doc); it only works for a session the page
    configured (its random key), and anything that does not decode as a picture gets a message, not an exception.
    """
    import base64
    import binascii

    import cv2

    if not isinstance(frame, str) or not frame or len(frame) > MAX_FRAME_DATA_URL:
        return live_frame(ctx, sessions, None, session_key)
    try:
        data = base64.b64decode(frame.split(",", 1)[-1], validate=True)
    except (binascii.Error, ValueError):
        data = b""
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    if bgr is None:
        return {"image": None, "stats": _message_html(session_key or "", "⚠️ the webcam frame is not a JPEG/PNG "
                                                      "picture", "live-timing")}
    return live_frame(ctx, sessions, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), session_key)


VIEW_JPEG_QUALITY = 85


def jpeg_data_url(image: np.ndarray, quality: int = VIEW_JPEG_QUALITY) -> str:
    """The displayed frame (RGB uint8) as a JPEG data URL: it arrives in the same answer as the stats, with no
    second request for a file."""
    import base64

    import cv2

    ok, data = cv2.imencode(".jpg", np.ascontiguousarray(image[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ExportError("could not encode the live frame as JPEG")
    return "data:image/jpeg;base64," + base64.b64encode(data).decode()


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


def _live_view(ctx: AppContext, sessions: LiveSessions, root_state: Any, setting_comps: Mapping[str, Any] | None,
               wire: Callable[..., Any], triggers: list[Any], load: Any = None) -> dict[str, Any]:
    """Lay out and wire the live controls (model, side by side, webcam, output, record) where the caller is.

    ``setting_comps``: the Merge tab's setting components (the tab), or None (the stand-alone page: the project's
    saved merge settings are used). ``triggers``: events that refresh the model list and configure the session
    (the tab's select); ``load``: the page's load event (refreshes the list; setting the model configures).
    ``sessions``: the app's one :class:`LiveSessions`, also read by the frame endpoint (:func:`add_live_api`).
    Returns the components the caller wires further.
    """
    import gradio as gr

    with gr.Row():
        model = gr.Dropdown([], label="model (a training run, or a DFM/ONNX file in the project)",
                            elem_id="live-model", allow_custom_value=False)
        sbs = gr.Checkbox(False, label="side by side: original | swapped", elem_id="live-sbs")
        refresh = gr.Button("Refresh models", size="sm", scale=0)
    gr.HTML(LIVE_VIEW_HTML, elem_id="live-view", padding=False)
    stats = gr.HTML(_message_html("", "Pick a model, then start the webcam."), elem_id="live-stats")
    with gr.Row():
        rec = gr.Button("● Record to file", elem_id="live-record")
        stop = gr.Button("■ Stop and save", elem_id="live-stop")
    rec_status = gr.Markdown(elem_id="live-record-status")
    session = gr.State(None)  # the key of this page's LiveSession

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
    # the page's script (LIVE_JS) starts once the view is on the page (the tab is selected, or the page loaded)
    gr.on(triggers + ([load] if load is not None else []), None, js=LIVE_JS)
    wire(rec.click, partial(start_recording, sessions), {"session_key": session},
         {"live_key": session, "live_record_status": rec_status})
    wire(stop.click, partial(stop_recording, sessions), {**root, "session_key": session},
         {"status": rec_status, "live_key": session})
    return {"model": model, "status": rec_status}


LIVE_PAGE_PATH = "live"


def build_live_tab(ctx: AppContext, sessions: LiveSessions, root_state: Any, setting_comps: Mapping[str, Any],
                   wire: Callable[..., Any]) -> Any:
    """Lay out the Live tab (inside the page's ``gr.Tabs``), wire it and add the frame endpoint
    (:func:`add_live_api`, shared with the ``/live`` page); returns the tab."""
    import gradio as gr

    with gr.Tab("6 · Live", id="tab-live") as tab:
        add_live_api(ctx, sessions)  # inside the tab: at the level of gr.Tabs it would show as a second tab
        gr.Markdown(LIVE_TEXT, elem_classes=["learn"])
        gr.Markdown(f"The same live view on a page of its own, for a second screen: [/{LIVE_PAGE_PATH}]"
                    f"(/{LIVE_PAGE_PATH}) (it uses the project's *saved* merge settings).", elem_id="live-page-link")
        view = _live_view(ctx, sessions, root_state, setting_comps, wire, [tab.select])
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


def build_live_page(ctx: AppContext, sessions: LiveSessions, demo: Any, root: str | None,
                    wire: Callable[..., Any]) -> None:
    """Add the stand-alone live page (``/live``) to the app: the live view alone, with the project's saved merge
    settings. Its frames go to the endpoint that :func:`build_live_tab` added."""
    import gradio as gr

    from .tab_project import list_projects

    with demo.route("Live", f"/{LIVE_PAGE_PATH}"):
        gr.Markdown(LIVE_PAGE_TEXT, elem_classes=["learn"])
        projects = list_projects(ctx)
        current = Path(root).name if root else (projects[0] if projects else None)
        project = gr.Dropdown(projects, value=current, label="project", elem_id="live-project")
        root_state = gr.State(root or (str(ctx.workspace / current) if current else None))
        wire(project.change, partial(live_page_project, ctx), {"name": project}, {"root": root_state})
        _live_view(ctx, sessions, root_state, None, wire, [root_state.change], load=demo.load)


def live_page_project(ctx: AppContext, name: str | None) -> dict[str, Any]:
    """The live page's project: a project folder of the workspace, by name (as the Project tab opens it)."""
    from .tab_project import _workspace_child

    if not name:
        return {"root": None}
    try:
        return {"root": str(Project.open(_workspace_child(ctx, name)).root)}
    except WorkbenchError:
        return {"root": None}


def add_live_api(ctx: AppContext, sessions: LiveSessions) -> None:
    """Register :func:`live_jpeg` as the unqueued endpoint ``gradio_api/run/live_jpeg`` of the page being built.

    Unqueued: a frame must not wait behind a merge or an export in Gradio's queue, and the page keeps one frame in
    flight, so frames cannot pile up. Undocumented in the page's API list; it answers only for a configured
    session's random key.
    """
    import gradio as gr

    def live_jpeg_endpoint(frame: str, session_key: str) -> dict:
        return live_jpeg(ctx, sessions, frame, session_key)

    live_jpeg_endpoint.__name__ = LIVE_API_NAME
    gr.api(live_jpeg_endpoint, api_name=LIVE_API_NAME, queue=False, api_visibility="undocumented")


LIVE_VIEW_HTML = """<div class="live-view">
 <div class="live-controls">
  <button id="live-start" class="lg secondary">▶ Start webcam</button>
  <button id="live-halt" class="lg secondary">■ Stop webcam</button>
  <label><input type="checkbox" id="live-mirror" checked> mirror</label>
  <span class="live-note">frames go only to this workbench server</span>
 </div>
 <div class="live-panes">
  <div id="live-cam"><video autoplay muted playsinline style="max-width:100%;height:auto;transform:scaleX(-1)"></video></div>
  <div id="live-out"><img alt="swapped webcam frame (SYNTHETIC)" style="max-width:100%;height:auto"></div>
 </div>
 <div id="live-frame-stats"></div>
</div>"""

# The page's side of the live view: webcam -> JPEG -> POST gradio_api/run/live_jpeg -> <img>, one frame in flight.
# Installed once per page (the tab's select or the page's load runs it); it listens for the start/stop buttons.
LIVE_JS = r"""
() => {
  if (window.__wbLive) return;
  const state = window.__wbLive = {running: false, stream: null, sent: 0, shown: 0, generation: 0, timings: [],
    // Gradio builds a session (a copy of every component's config: ~45 ms on the full workbench page) for each
    // call that names none, so the page's frames name one of their own
    hash: 'live-' + Math.random().toString(36).slice(2) + Date.now().toString(36)};
  const q = (sel) => document.querySelector(sel);
  const endpoint = () => {
    const root = (window.gradio_config && window.gradio_config.root) || window.location.origin;
    return root.replace(/\/$/, '') + '/gradio_api/run/__API__';
  };
  const say = (text) => { const box = q('#live-frame-stats'); if (box) box.textContent = text; };
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  // One frame in flight: the next is grabbed when the answer is on screen, so what is shown is never behind a queue.
  // (Two in flight were tried: on 2 cores the page's and the server's work then compete, the swap takes twice as
  // long and the latency doubles for ~10 % more frames/s.)
  async function worker(video, generation) {
    const canvas = document.createElement('canvas');
    while (state.running && state.generation === generation && video.isConnected) {
      const t0 = performance.now();
      const w = video.videoWidth, h = video.videoHeight;
      if (!w || !h) { await sleep(50); continue; }
      canvas.width = w; canvas.height = h;
      const c = canvas.getContext('2d');
      const mirror = q('#live-mirror');
      if (mirror && mirror.checked) c.setTransform(-1, 0, 0, 1, w, 0); else c.setTransform(1, 0, 0, 1, 0, 0);
      c.drawImage(video, 0, 0, w, h);
      const key = (q('[data-live-key]') || {dataset: {}}).dataset.liveKey || '';
      const seq = ++state.sent;
      const body = JSON.stringify({data: [canvas.toDataURL('image/jpeg', 0.9), key], session_hash: state.hash});
      const t1 = performance.now();
      let out = null;
      try {
        const r = await fetch(endpoint(), {method: 'POST', headers: {'Content-Type': 'application/json'}, body});
        out = r.ok ? (await r.json()).data[0] : {image: null, stats: null, error: 'the server answered ' + r.status};
      } catch (e) { out = {image: null, stats: null, error: String(e)}; }
      const t2 = performance.now();
      // where a frame's time goes in the page (the browser test reports it): grab + encode, then the request
      state.timings.push({grab_encode: t1 - t0, request: t2 - t1});
      if (state.timings.length > 300) state.timings.shift();
      if (seq > state.shown) {  // an answer to a worker of an earlier start never replaces a newer one
        state.shown = seq;
        const img = q('#live-out img'), box = q('#live-frame-stats');
        if (out.image && img) img.src = out.image;
        if (box) {
          if (out.stats) {
            box.innerHTML = out.stats;  // the server's line, then what the page measured: grab to answer
            const line = box.querySelector('#live-timing');
            if (out.image && line) line.append(` · page round trip ${Math.round(t2 - t0)} ms`);
          } else say('⚠️ ' + (out.error || 'no answer'));
        }
      }
      await sleep(out.image ? Math.max(0, __INTERVAL_MS__ - (performance.now() - t0)) : 500);
    }
    if (state.generation === generation) state.running = false;
  }
  async function start() {
    const video = q('#live-cam video');
    if (!video || state.running) return;
    try {
      state.stream = await navigator.mediaDevices.getUserMedia(
        {video: {width: {ideal: 640}, height: {ideal: 480}}, audio: false});
    } catch (e) { say('⚠️ no webcam: ' + e); return; }
    video.srcObject = state.stream;
    await video.play().catch(() => {});
    state.running = true;
    state.generation += 1;  // a worker left from an earlier start sees this and ends
    worker(video, state.generation);
  }
  function halt() {
    state.running = false;
    if (state.stream) state.stream.getTracks().forEach((t) => t.stop());
    state.stream = null;
  }
  document.addEventListener('click', (e) => {
    if (e.target.closest('#live-start')) start();
    else if (e.target.closest('#live-halt')) halt();
  });
  document.addEventListener('change', (e) => {
    if (e.target.id === 'live-mirror') {
      const v = q('#live-cam video'); if (v) v.style.transform = e.target.checked ? 'scaleX(-1)' : 'none';
    }
  });
}
""".replace("__API__", LIVE_API_NAME).replace("__INTERVAL_MS__", str(round(1000 * MIN_FRAME_INTERVAL_S)))
