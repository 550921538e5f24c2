"""Train tab: start, control and watch the background trainer; the latent-space panel."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import ConfigError, TrainingError, WorkbenchError
from ..images import to_uint8
from ..project import Project
from .common import (
    SIDES,
    _check_side,
    _child,
    _mtime,
    _project,
    _run_dir,
    _toast,
    _update,
    error_text,
    guarded,
)
from .context import AppContext

LATENT_CELL = 160  # the latent panel shows faces at least this large
DEFAULT_RUN = "tiny"  # the run name offered when a project has none yet
STARTING_UP = "is starting up (loading faces and the model)"  # the refusal a second Start gets meanwhile


def option_specs() -> dict[str, Any]:
    """Every training option's :class:`workbench.options.OptionSpec` (help, range, choices), in dataclass order:
    the tab's controls are generated from it."""
    from ..train.options import OPTION_SPECS

    return dict(OPTION_SPECS)


def run_choices(root: str | None) -> list[str]:
    """Names of the project's training runs (their state is shown by the status line, which stays current)."""
    from ..train import list_runs

    if not root:
        return []
    try:
        return [r.name for r in list_runs(Project.open(root))]
    except WorkbenchError:
        return []


def _options_dict(values: Mapping[str, Any]) -> dict[str, Any]:
    return {f"opt:{k}": v for k, v in values.items()}


@guarded
def preset_options(preset_name: str) -> dict[str, Any]:
    """The option values of a preset (to fill the form)."""
    from ..train import preset

    return {**_options_dict(preset(preset_name).to_dict()),
            "status": f"Loaded preset **{preset_name}**: change any option before starting."}


@guarded
def run_options(root: str, run: str | None) -> dict[str, Any]:
    """When an existing run is picked: its saved options (a restart resumes from its checkpoint)."""
    from ..train import read_run_config, read_status

    if not root or not run:
        return {}
    project = _project(root)
    run_dir = _run_dir(project, run, must_exist=False)
    if not (run_dir / "config.json").is_file():
        return {"status": f"New run **{run}**: pick a preset, adjust the options and press Start."}
    config = read_run_config(run_dir)
    status = read_status(run_dir)
    return {**_options_dict(config.options.to_dict()), "train_seen": {},
            "status": f"Run **{run}**: {status.summary()}. Start resumes from its checkpoint with these options."}


@guarded
def attach_training(root: str | None) -> dict[str, Any]:
    """On page load: re-attach to the project's running trainer (or its most recent run)."""
    from ..train import latest_run, list_runs

    if not root:
        return {"run": _update(choices=[], value=None)}
    runs = list_runs(Project.open(root))
    choices = run_choices(root)
    if not runs:
        return {"run": _update(choices=choices, value=DEFAULT_RUN)}
    active = [r for r in runs if r.is_active]
    pick = active[0] if active else latest_run(root)
    out = run_options(root, pick.name)
    out["run"] = _update(choices=choices, value=pick.name)
    if active:
        out["status"] = f"Re-attached to the running trainer of **{pick.name}** (pid {pick.pid})."
    return out


@guarded
def start_training(root: str, run: str, options: Mapping[str, Any], max_steps: int | None = None) -> dict[str, Any]:
    """Start (or resume) the background trainer on ``models/<run>`` with the form's options."""
    from ..train import TrainOptions, read_status, start

    project = _project(root)
    run_dir = _run_dir(project, run, must_exist=False)
    status = read_status(run_dir)
    if status.state_text() == "starting":  # launched moments ago: loading faces and the model, no pid yet
        raise TrainingError(f"run '{run}' {STARTING_UP}", run_dir,
                            "wait a few seconds: its step counter appears below")
    if status.is_active:
        raise TrainingError(f"run '{run}' is already training (pid {status.pid})", run_dir,
                            "pause or stop it first, or start another run name")
    values = {k: v for k, v in options.items() if v is not None and v != ""}
    opts = TrainOptions.from_dict(values)
    limit = int(max_steps) if max_steps else None
    handle = start(run_dir, opts, max_steps=limit)
    return {"status": f"Started the trainer for **{run}** (pid {handle.pid}); its preview appears below as soon "
                      f"as the first grid is written. Closing the page does not stop it.",
            "run": _update(choices=run_choices(root), value=run), "train_seen": {}}


@guarded
def control_training(root: str, run: str, command: str) -> dict[str, Any]:
    """Send pause / resume / save / preview / stop to the running trainer."""
    from ..train import read_status, send_command

    project = _project(root)
    run_dir = _run_dir(project, run)
    status = read_status(run_dir)
    if not status.is_active and status.state_text() != "starting":  # a starting trainer obeys commands on start
        state = status.state_text()
        _toast("info", f"run '{run}' is not running ({state})")
        return {"status": f"Run **{run}** is not running ({state}); nothing sent."}
    send_command(run_dir, command)
    verbs = {"pause": "Pausing", "resume": "Resuming", "save": "Saving", "preview": "Drawing a preview for",
             "stop": "Saving and stopping"}
    return {"status": f"{verbs.get(command, command)} **{run}**…"}


PLOT_SIZE = (520, 240)  # px of each metric plot in the page


def metrics_plots(rows: list[dict]) -> dict[str, Any]:
    """The Train tab's four plots as images: training losses, held-out SSIM, held-out PSNR, and the identity
    score of src->dst swaps ("looks like the source": the share closer to the source, the median distance).

    Drawn by :func:`workbench.viz.series_plot` on a numeric step axis (a single point shows as a marker), from
    :func:`workbench.train.runs.metric_series`, so the page and the notebooks plot the same numbers.
    """
    from .. import viz
    from ..train.runs import metric_series

    losses = {k: v for k, v in metric_series(rows, "train").items() if k != "total"}
    evals = metric_series(rows, "eval")
    ssim = {k: v for k, v in evals.items() if k.startswith("ssim_")}
    # the identity score of src->dst swaps: the share that reads as the source, and the median distance to it
    identity = {name: evals[key] for key, name in (("id_closer_to_src", "looks like the source (share)"),
                                                  ("id_distance_src", "distance to the source (median)"))
                if key in evals}
    psnr = {k: v for k, v in evals.items() if k.startswith("psnr_")}
    return {
        "loss_plot": to_uint8(viz.series_plot(losses, PLOT_SIZE, "training loss (mean of recent steps)",
                                              ylabel="loss")),
        "metrics_plot": to_uint8(viz.series_plot(ssim, PLOT_SIZE, "held-out SSIM (higher is better)",
                                                 ylabel="SSIM")),
        "psnr_plot": to_uint8(viz.series_plot(psnr, PLOT_SIZE, "held-out PSNR (higher is better)",
                                              ylabel="dB")),
        "identity_plot": to_uint8(viz.series_plot(identity, PLOT_SIZE, "does the swap look like the source? "
                                                  "(share up, distance down)", ylabel="share / distance")),
    }


def _status_markdown(status: Any) -> tuple[str, str]:
    step = f"Step {status.step}" + (f" / {status.target_steps}" if status.target_steps else "")
    parts = [f"**{status.name}**: {status.state_text()}", *status.detail_parts()]
    if status.is_active and status.pid:
        parts.append(f"pid {status.pid}")
    text = " · ".join(parts)
    if status.last_error:
        text += f"  \n⚠️ {status.last_error.splitlines()[0]}"
    return step, text


def poll_training(root: str | None, run: str | None, seen: Mapping[str, Any] | None,
                  note: str | None = None) -> dict[str, Any]:
    """The timer tick: status line, step counter, and the preview/plots only when their files changed.

    ``note`` is the action line above the status: a "starting up" refusal there is replaced once the trainer
    has started (it was true for a few seconds, not for the whole run). Never raises and never toasts (it
    runs every poll interval).
    """
    from ..train import latest_preview, read_metrics, read_status
    from ..train.runs import METRICS_NAME

    seen = dict(seen or {})
    if not root or not run:
        return {"train_step": "Step —", "train_status": "No run selected."}
    try:
        project = Project.open(root)
        run_dir = _run_dir(project, run, must_exist=False)
    except WorkbenchError as exc:
        return {"train_status": "⚠️ " + error_text(exc)}
    out: dict[str, Any] = {}
    switched = seen.get("run") != str(run_dir)
    if switched:  # another run (or a new name): nothing shown may belong to the previous one
        seen = {"run": str(run_dir)}
    status = read_status(run_dir)
    out["train_step"], out["train_status"] = _status_markdown(status)
    if note and STARTING_UP in note and status.state_text() != "starting":
        out["note"] = f"Run **{run}** has started up: {status.state_text()}, {status.step_text()}."
    preview = latest_preview(run_dir)
    key = (_mtime(preview), preview.stat().st_size) if preview is not None else None
    if preview is not None and list(key) != seen.get("preview"):
        out["preview"] = str(preview)
        seen["preview"] = list(key)
        out["preview_info"] = f"Preview at step {status.preview_step if status.preview_step is not None else '?'}"
    elif preview is None and (switched or seen.get("preview") is not None):
        out["preview"] = None
        out["preview_info"] = "No preview yet for this run: it appears after the first training steps."
        seen["preview"] = None
    metrics_file = run_dir / METRICS_NAME
    mkey = _mtime(metrics_file), (metrics_file.stat().st_size if metrics_file.is_file() else 0)
    if list(mkey) != seen.get("metrics"):
        out.update(metrics_plots(read_metrics(run_dir)))
        seen["metrics"] = list(mkey)
    out["train_seen"] = seen
    return out


def latent_face_choices(root: str | None, limit: int = 300) -> list[str]:
    """``"src/NAME"`` and ``"dst/NAME"`` for the latent panel's face pickers."""
    from ..faceset import list_face_files

    if not root:
        return []
    try:
        project = Project.open(root)
    except WorkbenchError:
        return []
    out = []
    for side in SIDES:
        out += [f"{side}/{p.name}" for p in list_face_files(project.aligned_dir(side))[:limit]]
    return out


def _latent_face(project: Project, ref: str, model_config: Any) -> np.ndarray:
    from ..faceset import load_aligned_face
    from ..train.data import prepare_face

    if not ref or "/" not in ref:
        raise ConfigError("pick a face (src/NAME or dst/NAME)")
    side, name = ref.split("/", 1)
    path = _child(project, project.aligned_dir(_check_side(side)), name)
    image, meta = load_aligned_face(path)
    face, _, _, _ = prepare_face(image, meta.landmarks, model_config.face_type, meta.face_type,
                                 int(model_config.resolution))
    return face


def _display_size(faces: list[np.ndarray], side: int = LATENT_CELL) -> list[np.ndarray]:
    """Enlarge small model-resolution faces so a strip of them is readable in the page."""
    import cv2

    return [f if f.shape[0] >= side else cv2.resize(np.asarray(f, np.float32), (side, side),
                                                     interpolation=cv2.INTER_CUBIC) for f in faces]


@guarded
def latent_reconstruct(ctx: AppContext, root: str, run: str, face: str) -> dict[str, Any]:
    """One face drawn by both decoders (source decoder = the swap for a destination face)."""
    from .. import viz
    from ..train.latent import latent_code, reconstruct_both

    project = _project(root)
    predictor = ctx.predictor(_run_dir(project, run))
    model = predictor.model
    x = _latent_face(project, face, predictor.config)
    via_src, via_dst = reconstruct_both(model, x)
    code = latent_code(model, x)
    grid = viz.image_grid(_display_size([x, via_src, via_dst]), 3, labels=["input", "src decoder", "dst decoder"])
    return {"latent_image": to_uint8(grid),
            "status": f"Code of `{face}`: {code.size} numbers (mean {code.mean():+.3f}, std {code.std():.3f})."}


@guarded
def latent_interpolate(ctx: AppContext, root: str, run: str, face_a: str, face_b: str, steps: int = 6,
                       decoder: str = "src") -> dict[str, Any]:
    """Decode points on the straight line between two faces' codes."""
    from .. import viz
    from ..train.latent import interpolate

    project = _project(root)
    predictor = ctx.predictor(_run_dir(project, run))
    a = _latent_face(project, face_a, predictor.config)
    b = _latent_face(project, face_b, predictor.config)
    steps = int(min(max(int(steps or 6), 2), 12))
    frames = interpolate(predictor.model, a, b, steps=steps, identity=_check_side(decoder))
    labels = [f"t={t:.2f}" for t in np.linspace(0, 1, steps)]
    grid = viz.image_grid(_display_size([a, *frames, b]), steps + 2, labels=["A", *labels, "B"])
    return {"latent_image": to_uint8(grid),
            "status": f"{steps} points from `{face_a}` to `{face_b}`, drawn by the {decoder} decoder."}
