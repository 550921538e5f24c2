"""ipywidgets helpers for the notebooks: a live training monitor and slider playgrounds.

* :class:`TrainingMonitor` watches a run folder (``workbench.train`` readers only: status, metrics, previews;
  it never imports torch and never talks to the trainer except through command files): a loss plot, the
  held-out metrics, the latest preview grid, and pause / resume / save / preview / stop buttons. Poll it in
  the cell with :meth:`TrainingMonitor.watch` (a loop that ends) or in a background thread with
  :meth:`TrainingMonitor.start`.
* :class:`LivePlot` shows a loss curve and a preview that update in place while a notebook trains in-process.
* :func:`mask_slider_demo` and :func:`merge_settings_explorer` put sliders on :mod:`workbench.masks` and
  :func:`workbench.merge.merge_face`. The pictures come from pure functions (:func:`mask_demo_image`,
  :func:`merge_preview`) that return arrays, so the notebooks can also show them as plain images.

ipywidgets is imported only when a widget is built.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from . import viz
from .errors import TrainingError
from .images import encode_image

FINAL_STATES = ("stopped", "finished", "error")
BUTTONS = (("pause", "Pause", "warning"), ("resume", "Resume", "success"), ("save", "Save", "info"),
           ("preview", "Preview", "info"), ("stop", "Stop", "danger"))
MASK_KINDS = ("hull", "eyes", "mouth", "eyes_mouth")


def _png(image: np.ndarray) -> bytes:
    img = np.asarray(image)
    return encode_image(img if img.dtype == np.uint8 else np.clip(img.astype(np.float32), 0, 1), "png")


def _resize_width(image: np.ndarray, width: int) -> np.ndarray:
    h, w = image.shape[:2]
    if w == width:
        return image
    interp = cv2.INTER_AREA if w > width else cv2.INTER_CUBIC
    return np.clip(cv2.resize(image, (width, max(1, round(h * width / w))), interpolation=interp), 0, 1)


def loss_history(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[float]]:
    """``metrics.jsonl`` rows -> ``{"src": [...], "dst": [...], ...}`` (:func:`workbench.train.runs.metric_series`)."""
    from .train.runs import metric_series

    history = {name: [v for _, v in points] for name, points in metric_series(list(rows)).items()}
    if "total" in history and len(history) > 1:
        history.pop("total")  # src + dst: the sum would squash the two curves
    return history


def _status_html(status: Any, alive: bool) -> str:
    colour = {"running": "#2a7", "paused": "#d90", "error": "#c33", "finished": "#27c", "stopped": "#666"}
    state = status.state_text(alive=alive)
    parts = [f"<b>{status.name}</b> <span style='color:{colour.get(status.state, '#666')}'>&#9679; {state}</span>",
             status.step_text(), *status.detail_parts()]
    html = " &middot; ".join(parts)
    if status.last_error:
        html += f"<br><span style='color:#c33'>error: {status.last_error.splitlines()[0]}</span>"
    return html


def identity_history(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[float]]:
    """``metrics.jsonl`` eval rows -> the identity curves of src->dst swaps (see :mod:`workbench.quality`)."""
    from .quality import identity_curve

    curve = identity_curve(rows)
    return {"looks like the source (share)": [c[1] for c in curve],
            "distance to source (median)": [c[2] if c[2] is not None else float("nan") for c in curve]}


def _metrics_html(metrics: Mapping[str, Any]) -> str:
    rows = [(k, v) for k, v in metrics.items() if k.startswith(("ssim_", "psnr_", "id_closer", "id_distance"))]
    if not rows:
        return "<i>held-out metrics appear after the first evaluation</i>"
    cells = "".join(f"<tr><td>{k}</td><td>{v:.3f}</td></tr>" for k, v in rows)
    step = metrics.get("step")
    return f"<b>held-out faces{f' (step {step})' if step is not None else ''}</b><table>{cells}</table>"


class TrainingMonitor:
    """A live view of a training run folder with control buttons.

    Args:
        run_dir: the run folder (``PROJECT/models/<name>``).
        handle: the :class:`workbench.train.TrainerHandle` from ``start`` (optional; lets the monitor tell a
            trainer that is still starting from one that died).
        poll_seconds: default refresh interval of :meth:`watch` and :meth:`start`.
        plot_size: (width, height) of the loss plot in pixels.
        preview_width: width the preview grid is shown at.

    Use ``display(monitor)`` (or make it the last expression of a cell), then ``monitor.watch()``.
    """

    def __init__(self, run_dir: str | Path, *, handle: Any = None, poll_seconds: float = 1.0,
                 plot_size: tuple[int, int] = (480, 240), preview_width: int = 640):
        import ipywidgets as w

        self.run_dir = Path(run_dir)
        self.handle = handle
        self.poll_seconds = float(poll_seconds)
        self.plot_size = plot_size
        self.preview_width = int(preview_width)
        self.status: Any = None
        self._rows_seen = -1
        self._preview_key: tuple[int, int] | None = None
        self._loss_image: np.ndarray | None = None
        self._preview_image: np.ndarray | None = None
        self._thread: threading.Thread | None = None
        self._stop_event = threading.Event()
        self._lock = threading.Lock()

        self.header = w.HTML()
        self.message = w.HTML()
        self.loss_view = w.Image(format="png", layout=w.Layout(width=f"{plot_size[0]}px"))
        self.metrics_view = w.HTML()
        self.identity_view = w.Image(format="png", layout=w.Layout(width=f"{plot_size[0]}px"))
        self.preview_view = w.Image(format="png", layout=w.Layout(width=f"{self.preview_width}px"))
        self.preview_caption = w.HTML()
        self.buttons = {}
        for command, label, style in BUTTONS:
            button = w.Button(description=label, button_style=style, layout=w.Layout(width="90px"))
            button.on_click(lambda _b, c=command: self.send(c))
            self.buttons[command] = button
        self.widget = w.VBox([
            self.header,
            w.HBox(list(self.buttons.values())),
            self.message,
            w.HBox([self.loss_view, self.identity_view, self.metrics_view]),
            self.preview_caption,
            self.preview_view,
        ])
        self.refresh()

    # ---- display ---------------------------------------------------------------------------------------
    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    # ---- reading the run folder ------------------------------------------------------------------------
    def refresh(self) -> Any:
        """Re-read the run folder and update the widgets; returns the :class:`workbench.train.RunStatus`."""
        from .train.runs import latest_preview, read_metrics, read_status

        with self._lock:
            status = read_status(self.run_dir)
            self.status = status
            self.header.value = _status_html(status, self._alive(status))
            rows = read_metrics(self.run_dir)
            if len(rows) != self._rows_seen:
                self._rows_seen = len(rows)
                self._loss_image = viz.loss_plot(loss_history(rows), size=self.plot_size,
                                                 title="training loss (one point per 10 steps)")
                self.loss_view.value = _png(self._loss_image)
                self.identity_view.value = _png(viz.loss_plot(
                    identity_history(rows), size=self.plot_size,
                    title="src->dst swaps: looks like the source (one point per metrics step)"))
                evals = [r for r in rows if r.get("kind") == "eval"]
                self.metrics_view.value = _metrics_html(evals[-1] if evals else status.metrics)
            path = latest_preview(self.run_dir)
            if path is not None:
                stat = path.stat()
                key = (stat.st_mtime_ns, stat.st_size)
                if key != self._preview_key:
                    from .images import read_image

                    try:
                        self._preview_image = read_image(path)
                    except Exception:  # noqa: BLE001 - replaced between stat and read: take it next time
                        return status
                    self._preview_key = key
                    self.preview_view.value = _png(self._preview_image)
                    step = status.preview_step
                    self.preview_caption.value = ("<b>preview</b> (columns: src, src→src, dst, dst→dst, "
                                                  "<b>src→dst = the swap</b>; right half: masked)"
                                                  + (f", step {step}" if step is not None else ""))
        return status

    def _alive(self, status: Any) -> bool:
        if status.alive:
            return True
        return self.handle is not None and self.handle.is_alive()

    # ---- controls --------------------------------------------------------------------------------------
    def send(self, command: str) -> Path | None:
        """Drop a command file (pause, resume, save, preview, stop) into the run folder.

        When the run has ended and no trainer process is alive, nothing is sent (returns None): a command
        file left behind would otherwise be obeyed by the *next* session as soon as it starts.
        """
        from .train.runs import read_status, send_command

        status = read_status(self.run_dir)
        if status.state in FINAL_STATES + ("new",) and not self._alive(status):
            self.message.value = f"no trainer is running ({status.state}): <b>{command}</b> not sent"
            return None
        path = send_command(self.run_dir, command)
        self.message.value = f"sent <b>{command}</b> at {time.strftime('%H:%M:%S')}"
        return path

    def stop_trainer(self, timeout: float = 180.0) -> Any:
        """Make sure the trainer has ended: send ``stop`` if it still runs, wait for it, then drop any command
        files it never read (so they cannot stop the next session). Returns the final status."""
        from .train.runs import take_commands, trainer_pid

        status = self.refresh()
        if self._alive(status) and status.state not in FINAL_STATES:
            self.send("stop")
        deadline = time.monotonic() + timeout
        while (self.handle is not None and self.handle.is_alive()) or trainer_pid(self.run_dir) is not None:
            if time.monotonic() > deadline:
                raise TrainingError(f"the trainer did not stop within {timeout:.0f} s", self.run_dir,
                                    "read trainer.log; stop it with the Stop button or end its process")
            time.sleep(0.2)
        leftover = take_commands(self.run_dir)
        if leftover:
            self.message.value = f"the trainer had ended; removed unread command(s): {', '.join(leftover)}"
        return self.refresh()

    # ---- polling ---------------------------------------------------------------------------------------
    def watch(self, timeout: float | None = None, *, until_step: int | None = None,
              until_states: Sequence[str] = FINAL_STATES, poll_seconds: float | None = None,
              grace_seconds: float = 60.0, raise_on_error: bool = True) -> Any:
        """Refresh in a loop until the run reaches one of ``until_states`` (or ``until_step``), or ``timeout``.

        Args:
            timeout: give up after this many seconds (returns the last status; None = no limit).
            until_step: also return once the trainer has reached this step.
            until_states: states that end the watch (default: stopped, finished, error).
            poll_seconds: refresh interval (default: the monitor's).
            grace_seconds: how long a trainer may look "not alive" (still starting) before it counts as dead.
            raise_on_error: raise TrainingError when the trainer reports an error or its process is gone.

        Returns:
            The last :class:`workbench.train.RunStatus`.
        """
        poll = self.poll_seconds if poll_seconds is None else float(poll_seconds)
        started = time.monotonic()
        dead_since: float | None = None
        while True:
            status = self.refresh()
            if raise_on_error and status.state == "error":
                raise TrainingError(f"the trainer stopped with an error: {status.last_error}", self.run_dir,
                                    "read trainer.log in the run folder")
            if status.state in until_states and (status.state in FINAL_STATES or self._alive(status)):
                return status
            if until_step is not None and status.step >= until_step:
                return status
            if status.state in ("starting", "running", "paused", "saving") and not self._alive(status):
                dead_since = dead_since or time.monotonic()
                if time.monotonic() - dead_since > grace_seconds:
                    if raise_on_error:
                        raise TrainingError("the trainer process is gone", self.run_dir,
                                            "read trainer.log in the run folder, then start it again (it resumes)")
                    return status
            else:
                dead_since = None
            if timeout is not None and time.monotonic() - started >= timeout:
                return status
            time.sleep(poll)

    def start(self, poll_seconds: float | None = None) -> None:
        """Refresh in a background thread (the notebook stays usable) until :meth:`stop` or the run ends."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop_event.clear()
        poll = self.poll_seconds if poll_seconds is None else float(poll_seconds)

        def loop() -> None:
            while not self._stop_event.wait(poll):
                status = self.refresh()
                if status.state in FINAL_STATES and not self._alive(status):
                    break

        self._thread = threading.Thread(target=loop, name=f"monitor-{self.run_dir.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the background refresh thread (the trainer keeps running; use the Stop button for that)."""
        self._stop_event.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._thread = None

    # ---- a static picture ------------------------------------------------------------------------------
    def snapshot(self, width: int | None = None) -> np.ndarray:
        """Status line, loss plot and latest preview stacked into one RGB float32 array (a plain image output)."""
        from .train.runs import read_metrics

        status = self.refresh()
        width = int(width or self.preview_width)
        banner = viz.label_image(np.ones((30, width, 3), np.float32), _status_line(status))
        loss = viz.loss_plot(loss_history(read_metrics(self.run_dir)), size=(width, max(160, width * 2 // 5)),
                             title="training loss (one point per 10 steps)")
        parts = [banner, loss]
        if self._preview_image is not None:
            parts.append(_resize_width(self._preview_image, width))
        gap = np.ones((4, width, 3), np.float32)
        out = [parts[0]]
        for part in parts[1:]:
            out += [gap, part]
        return np.concatenate(out, axis=0)


def _status_line(status: Any) -> str:
    if status is None:
        return ""
    losses = ", ".join(f"{k} {v:.3f}" for k, v in status.losses.items() if k in ("src", "dst"))
    return f"run '{status.name}': {status.state}, step {status.step}" + (f", loss {losses}" if losses else "")


class LivePlot:
    """A loss curve and a preview grid that update in place while a notebook trains in-process.

    ``update(step, losses, preview)`` appends the losses; it redraws at most every ``every_seconds`` and
    whenever a new preview arrives. The picture is one PNG output (so it is kept in the notebook).
    """

    def __init__(self, title: str = "training", every_seconds: float = 2.0, width: int = 600):
        self.title = title
        self.every_seconds = float(every_seconds)
        self.width = int(width)
        self.history: dict[str, list[float]] = {}
        self.preview: np.ndarray | None = None
        self.step = 0
        self._handle: Any = None
        self._last = 0.0

    def render(self) -> np.ndarray:
        """The current picture: loss curves (log scale) above the latest preview."""
        plot = viz.loss_plot(self.history, size=(self.width, 220), title=f"{self.title}: step {self.step}",
                             log_y=True)
        if self.preview is None:
            return plot
        return np.concatenate([plot, np.ones((4, self.width, 3), np.float32),
                               _resize_width(self.preview, self.width)], axis=0)

    def update(self, step: int, losses: Mapping[str, float], preview: np.ndarray | None = None) -> None:
        from IPython.display import Image, display

        self.step = int(step)
        for key, value in losses.items():
            self.history.setdefault(key, []).append(float(value))
        if preview is not None:
            self.preview = np.asarray(preview, np.float32)
        now = time.monotonic()
        if preview is None and now - self._last < self.every_seconds:
            return
        self._last = now
        image = Image(data=_png(self.render()))
        if self._handle is None:
            self._handle = display(image, display_id=True)
        else:
            self._handle.update(image)

    __call__ = update


# ------------------------------------------------------------------------------------------------- masks


def mask_demo_image(face: np.ndarray, landmarks: np.ndarray, kind: str = "hull", erode: int = 0,
                    blur: int = 0) -> np.ndarray:
    """A landmark mask, eroded (> 0) or dilated (< 0) and feathered, beside the face it covers.

    Args:
        face: (S, S, 3) aligned face (or any image the landmarks live in).
        landmarks: (68, 2) landmarks in that image's pixels.
        kind: "hull" (DFL's full-face mask), "eyes", "mouth" or "eyes_mouth".
        erode: pixels to shrink (> 0) or grow (< 0) the mask (:func:`workbench.masks.erode_dilate`).
        blur: feather radius in pixels (:func:`workbench.masks.feather`).

    Returns:
        (S, 2*S + 4, 3) float32: the face with the mask tinted red | the mask itself.
    """
    from . import masks

    builders = {"hull": masks.hull_mask, "eyes": masks.eye_mask, "mouth": masks.mouth_mask,
                "eyes_mouth": masks.eyes_mouth_mask}
    if kind not in builders:
        raise ValueError(f"kind must be one of {', '.join(MASK_KINDS)}, got {kind!r}")
    mask = builders[kind](face.shape[:2], landmarks)
    mask = masks.feather(masks.erode_dilate(mask, int(erode)), int(blur))
    tinted = viz.overlay_mask(face, mask, alpha=0.5)
    gap = np.ones((face.shape[0], 4, 3), np.float32)
    return np.concatenate([tinted, gap, viz.label_image(mask, f"{kind} erode {erode} blur {blur}")], axis=1)


def mask_slider_demo(face: np.ndarray, landmarks: np.ndarray, *, erode_range: tuple[int, int] = (-30, 30),
                     blur_range: tuple[int, int] = (0, 40), width: int = 520) -> Any:
    """Sliders for a mask's erode/dilate and feather, with a dropdown for the mask kind.

    Returns:
        An ``ipywidgets.VBox``; its ``.image`` attribute is the ``ipywidgets.Image`` that redraws.
    """
    import ipywidgets as w

    kind = w.Dropdown(options=MASK_KINDS, value="hull", description="mask")
    erode = w.IntSlider(value=0, min=erode_range[0], max=erode_range[1], description="erode px",
                        continuous_update=False)
    blur = w.IntSlider(value=0, min=blur_range[0], max=blur_range[1], description="blur px",
                       continuous_update=False)
    view = w.Image(format="png", layout=w.Layout(width=f"{width}px"))

    def redraw(_change: Any = None) -> None:
        view.value = _png(mask_demo_image(face, landmarks, kind.value, erode.value, blur.value))

    for control in (kind, erode, blur):
        control.observe(redraw, names="value")
    redraw()
    box = w.VBox([w.HBox([kind, erode, blur]), view])
    box.image = view  # type: ignore[attr-defined]
    box.controls = {"kind": kind, "erode": erode, "blur": blur}  # type: ignore[attr-defined]
    return box


# ------------------------------------------------------------------------------------------------- merge


def merge_preview(frame: np.ndarray, landmarks: np.ndarray, prediction: Any, settings: Any, *,
                  zoom: bool = True, seed: int = 0) -> np.ndarray:
    """``merge_face`` with a cached prediction; with ``zoom`` only the area around the face is returned."""
    from . import align
    from .merge import merge_face

    out, _mask = merge_face(frame, landmarks, None, settings, prediction=prediction,
                            rng=np.random.default_rng(seed))
    if not zoom or settings.mode == "raw-predict":
        return out
    corners = align.crop_corners(align.transform_matrix(landmarks, 64, "head"), 64)
    h, w = out.shape[:2]
    x0, y0 = np.floor(corners.min(axis=0)).astype(int)
    x1, y1 = np.ceil(corners.max(axis=0)).astype(int)
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    return out[y0:y1, x0:x1] if x1 - x0 > 8 and y1 - y0 > 8 else out


def merge_settings_explorer(frame: np.ndarray, landmarks: np.ndarray, predictor: Any, settings: Any = None, *,
                            width: int = 420) -> Any:
    """Sliders and dropdowns for the main merge settings on one destination frame.

    The model runs once (on the crop ``crop_for_model`` cuts); every change only re-runs
    :func:`workbench.merge.merge_face` with the cached prediction, so it stays interactive on a CPU.

    Args:
        frame: the destination frame, RGB float.
        landmarks: (68, 2) frame landmarks of its face.
        predictor: the model callable (``workbench.train.load_predictor``) or a ready prediction tuple.
        settings: starting :class:`workbench.merge.MergeSettings` (default: DFL's, with the predictor's
            resolution and face type).

    Returns:
        An ``ipywidgets.VBox`` with ``.controls`` (name -> widget), ``.image`` and ``.settings()``.
    """
    import ipywidgets as w

    from .merge import LEARNED_MASK_MODES, MODES, MergeSettings, crop_for_model
    from .merge.settings import SETTING_SPECS, model_facts

    if settings is None:
        facts = model_facts(predictor)
        settings = MergeSettings(**facts)
    prediction = predictor if isinstance(predictor, tuple) else predictor(crop_for_model(frame, landmarks,
                                                                                         settings)[0])
    s = settings
    specs = SETTING_SPECS  # ranges, choices and help come from MergeSettings' field descriptions

    def slider(name: str, description: str) -> Any:
        lo, hi = specs[name].range
        return w.IntSlider(value=getattr(s, name), min=lo, max=hi, description=description,
                           tooltip=specs[name].help)

    def dropdown(name: str, description: str, options: Sequence[str] | None = None) -> Any:
        return w.Dropdown(options=list(options or specs[name].choices), value=getattr(s, name),
                          description=description, tooltip=specs[name].help)

    controls = {
        "mode": dropdown("mode", "mode", [m for m in MODES if m != "raw-predict"]),
        "mask_mode": dropdown("mask_mode", "mask", LEARNED_MASK_MODES),
        "color_transfer": dropdown("color_transfer", "colour"),
        "erode": slider("erode", "erode"),
        "blur": slider("blur", "blur"),
        "output_face_scale": slider("output_face_scale", "face scale"),
        "sharpen_mode": dropdown("sharpen_mode", "sharpen"),
        "blursharpen_amount": slider("blursharpen_amount", "amount"),
        "image_denoise_power": slider("image_denoise_power", "denoise bg"),
    }
    for control in controls.values():
        control.continuous_update = False
    view = w.Image(format="png", layout=w.Layout(width=f"{width}px"))
    note = w.HTML()

    def current() -> Any:
        return s.replace(**{k: c.value for k, c in controls.items()})

    def redraw(_change: Any = None) -> None:
        try:
            view.value = _png(merge_preview(frame, landmarks, prediction, current()))
            note.value = "<i>SYNTHETIC: a face-swap result, not a real recording</i>"
        except Exception as exc:  # noqa: BLE001 - show the message next to the sliders, keep the UI alive
            note.value = f"<span style='color:#c33'>{type(exc).__name__}: {exc}</span>"

    for control in controls.values():
        control.observe(redraw, names="value")
    redraw()
    names = list(controls)
    left = w.VBox([controls[n] for n in names[:5]])
    right = w.VBox([controls[n] for n in names[5:]])
    box = w.VBox([w.HBox([left, right]), note, view])
    box.controls = controls  # type: ignore[attr-defined]
    box.image = view  # type: ignore[attr-defined]
    box.settings = current  # type: ignore[attr-defined]
    return box


WIDGET_INT_MAX = 2**31 - 1  # ipywidgets' bounded boxes need an upper bound; the options' unbounded ones get this


def option_widget(spec: Any, value: Any) -> Any:
    """One control for an options-dataclass field, generated from its :class:`workbench.options.OptionSpec`:
    a checkbox, a dropdown of its choices, a number box bounded by its range, or a text box."""
    import ipywidgets as w

    common = {"value": value, "description": spec.name.replace("_", " "), "tooltip": spec.help,
              "style": {"description_width": "initial"}}
    if spec.kind == "bool":
        return w.Checkbox(indent=False, **common)
    if spec.choices is not None:
        return w.Dropdown(options=list(spec.choices), **common)
    if spec.kind in ("int", "float"):
        lo, hi = spec.range or (-WIDGET_INT_MAX, WIDGET_INT_MAX)
        hi = WIDGET_INT_MAX if hi is None else hi
        box = w.BoundedIntText if spec.kind == "int" else w.BoundedFloatText
        return box(min=lo, max=hi, **common)
    return w.Text(**common)


def training_options_form(options: Any = None, *, columns: int = 3) -> Any:
    """Controls for every training option, generated from ``TrainOptions``' field descriptions.

    Args:
        options: the starting :class:`workbench.train.TrainOptions` (default: the ``tiny`` preset).
        columns: controls per row.

    Returns:
        An ``ipywidgets.VBox`` with ``.controls`` (name -> widget) and ``.options()``, which returns the
        validated :class:`TrainOptions` of the current values (ConfigError names a bad value).
    """
    import ipywidgets as w

    from .train.options import OPTION_SPECS, preset

    start = options if options is not None else preset("tiny")
    controls = {name: option_widget(spec, getattr(start, name, spec.default))
                for name, spec in OPTION_SPECS.items()}
    names = list(controls)
    rows = [w.HBox([controls[n] for n in names[i:i + columns]]) for i in range(0, len(names), columns)]
    box = w.VBox(rows)
    box.controls = controls  # type: ignore[attr-defined]
    box.options = lambda: start.replace(**{k: c.value for k, c in controls.items()})  # type: ignore[attr-defined]
    return box


__all__ = ["LivePlot", "TrainingMonitor", "loss_history", "mask_demo_image", "mask_slider_demo",
           "merge_preview", "merge_settings_explorer", "option_widget", "training_options_form"]
