"""Segment tab: draw XSeg include/exclude polygons on aligned faces, train XSeg, apply its masks.

Every click adds a point to the open polygon of the shown face and is saved at once into the face file
(``workbench.faceset.update_face_meta``: atomic, metadata only, pixels untouched), so closing the browser
never loses a label. The view is the aligned face at 512 px with the drawn label tinted green and,
optionally, the current XSeg model's prediction in magenta so the user labels exactly where the model fails.
The polygon outlines and points (include green, exclude red) are an SVG overlay drawn in the browser
(``OVERLAY_JS``) from a small JSON of the polygons: a click draws its point at once, and the server answers
with the saved polygons only; the 512 px view is re-encoded and re-sent only when the green tint changes
(a polygon closed, deleted or copied) or the face changes. That keeps a click well under 200 ms on 2 cores. Keys (outside text fields): A/D or ,/. previous/next face,
Q include, W exclude, C close polygon, Z undo point, Delete delete polygon.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from ..faceset import FaceMeta, load_aligned_face, read_face_meta, scan_faceset, update_face_meta
from ..images import to_uint8
from ..segment.labels import SegPolygon, has_labels, rasterize_polygons
from .common import _check_side, _project, guarded
from .context import AppContext

VIEW = 512
FILTERS = ("all", "unlabelled", "labelled")
KEYS_JS = """
() => {
  if (window.__wbSegmentKeys) return;
  window.__wbSegmentKeys = true;
  const click = (id) => { const b = document.querySelector('#' + id); if (b) b.click(); };
  document.addEventListener('keydown', (e) => {
    const t = e.target;
    if (t && (t.tagName === 'INPUT' || t.tagName === 'TEXTAREA' || t.isContentEditable)) return;
    const tab = document.querySelector('#seg-view');
    if (!tab || tab.offsetParent === null) return;  // only while the Segment tab is visible
    const k = e.key.toLowerCase();
    if (k === 'd' || k === '.') click('seg-next');
    else if (k === 'a' || k === ',') click('seg-prev');
    else if (k === 'c') click('seg-close');
    else if (k === 'z') click('seg-undo');
    else if (k === 'delete') click('seg-delete');
    else if (k === 'q' || k === 'w') {
      const v = k === 'q' ? 'include' : 'exclude';
      const r = document.querySelector('#seg-mode input[value="' + v + '"]'); if (r) r.click();
    } else return;
    e.preventDefault();
  });
}
"""

OVERLAY_JS = """
() => {
  if (window.__wbSegOverlay) return;
  window.__wbSegOverlay = true;
  // The polygons' outlines and points, drawn over the face as SVG. A click draws its point at once
  // (pending); the server's answer (the saved polygons, #seg-polys) then replaces it.
  const NS = 'http://www.w3.org/2000/svg';
  let pending = [], lastData = null, lastKey = '', server = {polys: []};
  window.__wbSegLatencies = [];
  const box = (img) => {  // the displayed picture inside <img> (object-fit: contain), as Gradio's click maths
    const r = img.getBoundingClientRect(), nw = img.naturalWidth || 1, nh = img.naturalHeight || 1;
    const s = Math.min(r.width / nw, r.height / nh);
    return {x: (r.width - nw * s) / 2, y: (r.height - nh * s) / 2, w: nw * s, h: nh * s, nw, nh, r};
  };
  document.addEventListener('click', (e) => {
    const img = e.target && e.target.closest ? e.target.closest('#seg-view img') : null;
    if (!img) return;
    const b = box(img);
    const x = Math.round((e.clientX - b.r.left - b.x) * b.nw / b.w), y = Math.round((e.clientY - b.r.top - b.y) * b.nh / b.h);
    if (x < 0 || y < 0 || x >= b.nw || y >= b.nh) return;
    const m = document.querySelector('#seg-mode input:checked');
    pending.push({x, y, kind: m ? m.value : 'include', t: performance.now(), drawn: false});
  }, true);
  const merged = () => {  // the server's polygons plus the clicks it has not answered yet (its own rule)
    const polys = server.polys.map((p) => ({kind: p.kind, closed: p.closed, points: p.points.slice()}));
    for (const p of pending) {
      const last = polys[polys.length - 1];
      if (last && !last.closed && last.kind === p.kind) { last.points.push([p.x, p.y]); continue; }
      if (last && !last.closed) last.closed = true;
      polys.push({kind: p.kind, closed: false, points: [[p.x, p.y]]});
    }
    return polys;
  };
  const draw = () => {
    requestAnimationFrame(draw);
    const img = document.querySelector('#seg-view img');
    const holder = document.querySelector('#seg-polys [data-polys]');
    const data = holder ? holder.getAttribute('data-polys') : null;
    if (data !== null && data !== lastData) {
      const parsed = JSON.parse(data);
      if (lastData !== null && parsed.event === 'click') pending.shift(); else pending = [];
      lastData = data; server = parsed;
    }
    if (!img || !img.parentElement) return;
    const b = box(img);
    const key = [lastData, pending.length, img.src, b.r.width, b.r.height, img.offsetLeft, img.offsetTop].join('|');
    let svg = img.parentElement.querySelector('svg.seg-overlay');
    if (key === lastKey && svg) return;
    lastKey = key;
    if (!svg) {
      svg = document.createElementNS(NS, 'svg');
      svg.setAttribute('class', 'seg-overlay');
      svg.style.position = 'absolute'; svg.style.pointerEvents = 'none'; svg.style.overflow = 'visible';
      if (getComputedStyle(img.parentElement).position === 'static') img.parentElement.style.position = 'relative';
      img.parentElement.appendChild(svg);
    }
    svg.style.left = (img.offsetLeft + b.x) + 'px'; svg.style.top = (img.offsetTop + b.y) + 'px';
    svg.style.width = b.w + 'px'; svg.style.height = b.h + 'px';
    svg.setAttribute('viewBox', '0 0 ' + (server.view || b.nw) + ' ' + (server.view || b.nh));
    const polys = merged();
    let points = 0, parts = [];
    for (const p of polys) {
      const c = p.kind === 'include' ? 'rgb(0,220,0)' : 'rgb(230,30,30)';
      const pts = p.points.map((q) => q[0] + ',' + q[1]).join(' ');
      if (p.points.length > 1)
        parts.push('<' + (p.closed ? 'polygon' : 'polyline') + ' points="' + pts + '" fill="none" stroke="' + c
                   + '" stroke-width="2" vector-effect="non-scaling-stroke"/>');
      for (const q of p.points)
        parts.push('<circle cx="' + q[0] + '" cy="' + q[1] + '" r="' + (p.closed ? 3 : 4) + '" fill="' + c + '"/>');
      points += p.points.length;
    }
    svg.innerHTML = parts.join('');
    svg.setAttribute('data-points', String(points));
    const now = performance.now();
    for (const p of pending) if (!p.drawn) { p.drawn = true; window.__wbSegLatencies.push(now - p.t); }
  };
  requestAnimationFrame(draw);
}
"""


def polygons_payload(polys: tuple[SegPolygon, ...], size: int, event: str = "view", view: int = VIEW) -> str:
    """Polygons of a ``size`` px face in view pixels, as the HTML the overlay script reads (``#seg-polys``)."""
    import html
    import json

    polys = [p.scaled(view / float(size)).to_dict() for p in polys]
    data = json.dumps({"view": view, "event": event, "polys": polys}, separators=(",", ":"))
    return f'<div class="seg-polys-data" data-polys="{html.escape(data, quote=True)}"></div>'


def _face_path(project: Any, side: str, name: str) -> Path:
    folder = project.aligned_dir(_check_side(side))
    path = (folder / Path(str(name)).name).resolve()
    if path.parent != folder.resolve() or not path.is_file():
        from ..errors import ProjectError

        raise ProjectError("no such face in this faceset", path, "refresh the Segment tab")
    return path


def list_faces(root: str, side: str, filt: str = "all") -> list[str]:
    """File names of the side's faces in faceset order, filtered by labelled / unlabelled."""
    project = _project(root)
    faces = scan_faceset(project.aligned_dir(_check_side(side))).faces
    if filt == "labelled":
        faces = tuple(r for r in faces if has_labels(r.meta.seg_polys))
    elif filt == "unlabelled":
        faces = tuple(r for r in faces if not has_labels(r.meta.seg_polys))
    return [r.path.name for r in faces]


def render_face(image: np.ndarray, meta: FaceMeta, prediction: np.ndarray | None = None,
                view: int = VIEW, outlines: bool = True) -> np.ndarray:
    """The editor view: (view, view, 3) uint8 face with label tint, the prediction and (with ``outlines``)
    the polygons and points; the app draws those in the browser instead (``OVERLAY_JS``)."""
    import cv2

    scale = view / float(image.shape[0])
    # uint8 compositing with cv2 (a few ms at 512 px): every click re-renders this view
    out = cv2.resize(to_uint8(image), (view, view), interpolation=cv2.INTER_CUBIC if scale > 1 else cv2.INTER_AREA)
    polys = [p.scaled(scale) for p in meta.seg_polys]
    layers = []
    if prediction is not None:
        pred = cv2.resize(prediction.astype(np.float32), (view, view), interpolation=cv2.INTER_LINEAR) >= 0.5
        layers.append((pred, (255, 0, 255), 0.3))
    # without outlines (the app) the open polygon is only the browser's overlay, so it is not tinted either
    tinted = polys if outlines else [p for p in polys if p.closed]
    if has_labels(tinted):
        layers.append((rasterize_polygons(tinted, (view, view)) > 0.5, (0, 255, 0), 0.25))
    for region, color, alpha in layers:
        tint = np.empty_like(out)
        tint[:] = color
        blended = cv2.addWeighted(out, 1 - alpha, tint, alpha, 0)
        out = np.where(region[..., None], blended, out)
    out = np.ascontiguousarray(out)
    for poly in polys if outlines else ():
        color = (0, 220, 0) if poly.kind == "include" else (230, 30, 30)
        pts = np.rint(np.asarray(poly.points, np.float64)).astype(np.int32).reshape(-1, 1, 2)
        if len(pts) > 1:
            cv2.polylines(out, [pts], poly.closed, color, 2, cv2.LINE_AA)
        for x, y in pts[:, 0]:
            cv2.circle(out, (int(x), int(y)), 4 if not poly.closed else 3, color, -1, cv2.LINE_AA)
    return out


def _xseg_model(ctx: AppContext, project: Any) -> tuple[Any, int]:
    """The project's XSeg model (loaded once per checkpoint write) and its checkpoint stamp; (None, 0) if none."""
    from ..segment.predict import load_xseg
    from ..segment.trainer import default_run_dir
    from ..train.runs import checkpoint_path

    ckpt = checkpoint_path(default_run_dir(project))
    if not ckpt.is_file():
        return None, 0
    stamp = ckpt.stat().st_mtime_ns
    return ctx.predictions(("xseg-model", str(ckpt), stamp), lambda: [load_xseg(ckpt.parent.parent)])[0], stamp


def _prediction_note(model: Any) -> str:
    return "no XSeg model yet (train one below)" if model is None else f"XSeg prediction of step {model.step} in magenta"


def _prediction(ctx: AppContext, project: Any, path: Path, image: np.ndarray,
                meta: FaceMeta) -> tuple[np.ndarray | None, str]:
    from ..segment.predict import predict_masks

    model, stamp = _xseg_model(ctx, project)
    if model is None:
        return None, _prediction_note(None)
    lms = meta.landmarks_at(image.shape[0])[None]
    mask = ctx.predictions(("xseg-pred", str(path), stamp),
                           lambda: [predict_masks(model, image[None], landmarks=lms)[0]])[0]
    return mask, _prediction_note(model)


def _info(meta: FaceMeta, path: Path, index: int, total: int, pred_note: str = "", note: str = "") -> str:
    n_inc = sum(p.kind == "include" for p in meta.seg_polys)
    n_exc = len(meta.seg_polys) - n_inc
    open_pts = len(meta.seg_polys[-1].points) if meta.seg_polys and not meta.seg_polys[-1].closed else 0
    return (f"face {index + 1}/{total} · `{path.name}` · {n_inc} include, {n_exc} exclude polygon(s)"
            + (f" · drawing: {open_pts} point(s)" if open_pts else "")
            + (" · applied XSeg mask stored" if meta.xseg_mask else "")
            + (f" · {pred_note}" if pred_note else "") + (f" · {note}" if note else ""))


def _view(ctx: AppContext, root: str, side: str, names: list[str], index: int, show_prediction: bool,
          note: str = "") -> dict[str, Any]:
    """Render face ``index`` of ``names`` with its info line (the common tail of every callback)."""
    project = _project(root)
    state = {"side": side, "names": names, "index": index}
    if not names:
        return {"seg_view": None, "seg_state": state, "seg_polys": polygons_payload((), VIEW),
                "seg_info": "No faces here (extract faces first, or change the filter)."}
    index = min(max(int(index), 0), len(names) - 1)
    state["index"] = index
    path = _face_path(project, side, names[index])
    image, meta = load_aligned_face(path)
    pred, pred_note = _prediction(ctx, project, path, image, meta) if show_prediction else (None, "")
    return {"seg_view": render_face(image, meta, pred, outlines=False), "seg_state": state,
            "seg_polys": polygons_payload(meta.seg_polys, meta.size), "seg_info": _info(meta, path, index, len(names), pred_note, note)}


@guarded
def segment_refresh(ctx: AppContext, root: str, side: str, filt: str, show_prediction: bool,
                    state: dict | None = None) -> dict[str, Any]:
    """(Re)list the faces for the side and filter; keep the current face when it is still in the list."""
    if not root:
        return {"seg_info": "Open a project first."}
    names = list_faces(root, side, filt)
    current = (state or {}).get("names", [])[(state or {}).get("index", 0)] if (state or {}).get("names") else None
    index = names.index(current) if current in names and (state or {}).get("side") == side else 0
    return _view(ctx, root, side, names, index, show_prediction)


def _edit(ctx: AppContext, root: str, state: dict, show_prediction: bool,
          change: Callable[[tuple[SegPolygon, ...], FaceMeta], tuple[SegPolygon, ...]],
          event: str = "edit") -> dict[str, Any]:
    """Apply ``change`` to the shown face's polygons and save them at once.

    The 512 px view is re-rendered only when the green tint changes (the closed polygons); otherwise only the
    polygons (a few hundred bytes) and the info line go back, and the browser redraws the outlines.
    """
    side, names, index = state.get("side", "src"), state.get("names", []), int(state.get("index", 0))
    if not names:
        return {"seg_info": "No face to label."}
    project = _project(root)
    path = _face_path(project, side, names[index])
    t0 = time.perf_counter()
    meta = read_face_meta(path)
    before = tuple(meta.seg_polys)
    polys = change(before, meta)
    if polys != before:
        meta = update_face_meta(path, seg_polys=polys)  # atomic, on every change; the JPEG pixels untouched
    saved_ms = 1000 * (time.perf_counter() - t0)
    note = f"saved ({saved_ms:.0f} ms)"
    if [p for p in polys if p.closed] != [p for p in before if p.closed]:
        return _view(ctx, root, side, names, index, show_prediction, note)
    pred_note = _prediction_note(_xseg_model(ctx, project)[0]) if show_prediction else ""
    return {"seg_polys": polygons_payload(meta.seg_polys, meta.size, event), "seg_state": {"side": side, "names": names, "index": index},
            "seg_info": _info(meta, path, index, len(names), pred_note, note)}


@guarded
def segment_click(ctx: AppContext, root: str, state: dict, mode: str, show_prediction: bool,
                  index: Any = None) -> dict[str, Any]:
    """A click on the view: add a point (in aligned-face pixels) to the open polygon, or start one."""
    x, y = (float(v) for v in (index or (0, 0))[:2])

    def add(polys, meta):
        scale = meta.size / float(VIEW)
        point = (round(x * scale, 2), round(y * scale, 2))
        if polys and not polys[-1].closed and polys[-1].kind == mode:
            last = polys[-1]
            return (*polys[:-1], SegPolygon(last.kind, (*last.points, point), closed=False))
        if polys and not polys[-1].closed:  # the mode changed mid-polygon: close it, start a new one
            polys = (*polys[:-1], SegPolygon(polys[-1].kind, polys[-1].points, closed=True))
        return (*polys, SegPolygon(mode, (point,), closed=False))

    return _edit(ctx, root, state, show_prediction, add, "click")


@guarded
def segment_action(ctx: AppContext, root: str, state: dict, show_prediction: bool, action: str = "close"
                   ) -> dict[str, Any]:
    """close (finish the open polygon), undo (last point), delete (last polygon), copy (previous face's)."""
    if action == "copy":
        names, index = state.get("names", []), int(state.get("index", 0))
        if index == 0 or not names:
            return {"seg_info": "There is no previous face to copy from."}
        prev = read_face_meta(_face_path(_project(root), state["side"], names[index - 1]))

        def copy(polys, meta):
            factor = meta.size / float(prev.size)
            return (*polys, *(SegPolygon(p.kind, p.scaled(factor).points, True) for p in prev.seg_polys))

        return _edit(ctx, root, state, show_prediction, copy)

    def edit(polys, meta):
        if not polys:
            return polys
        last = polys[-1]
        if action == "close":
            if last.closed:
                return polys
            return (*polys[:-1], SegPolygon(last.kind, last.points, True)) if len(last.points) >= 3 else polys[:-1]
        if action == "undo":
            if len(last.points) <= 1:
                return polys[:-1]
            return (*polys[:-1], SegPolygon(last.kind, last.points[:-1], closed=False))
        if action == "delete":
            return polys[:-1]
        raise ValueError(f"unknown action {action!r}")

    return _edit(ctx, root, state, show_prediction, edit)


@guarded
def segment_nav(ctx: AppContext, root: str, state: dict, show_prediction: bool, delta: int = 1) -> dict[str, Any]:
    """Previous / next face (an open polygon with 3+ points is closed first, as DFL saves on leaving a face)."""
    names = state.get("names", [])
    if not names:
        return {"seg_info": "No faces."}
    out = segment_action(ctx, root, state, False, action="close")
    index = min(max(int(state.get("index", 0)) + delta, 0), len(names) - 1)
    return {**out, **_view(ctx, root, state["side"], names, index, show_prediction)}


@guarded
def xseg_train(root: str, steps: int | None) -> dict[str, Any]:
    """Start (or resume) XSeg training in the background on both facesets."""
    from ..segment.trainer import XSegOptions, default_run_dir, start_xseg
    from ..train.runs import wait_for_state

    project = _project(root)
    run_dir = default_run_dir(project)
    start_xseg(run_dir, XSegOptions(), folders=[project.aligned_dir("src"), project.aligned_dir("dst")],
               steps=int(steps) if steps else None)
    status = wait_for_state(run_dir, ("running", "error", "stopped", "finished"), timeout=300)
    return {"seg_train_status": status.summary()}


@guarded
def xseg_control(root: str, command: str = "stop") -> dict[str, Any]:
    from ..segment.trainer import default_run_dir
    from ..train.runs import read_status, send_command

    run_dir = default_run_dir(_project(root))
    status = read_status(run_dir)
    if not status.is_active:
        return {"seg_train_status": f"no XSeg trainer is running ({status.summary()})"}
    send_command(run_dir, command)
    return {"seg_train_status": f"sent {command} · {status.summary()}"}


@guarded
def xseg_status(root: str, seen: str | None = None) -> dict[str, Any]:
    """The XSeg run's status line and latest preview; nothing is sent when neither changed since ``seen``."""
    from ..segment.trainer import default_run_dir
    from ..train.runs import latest_preview, read_status

    if not root:
        return {"seg_seen": seen}
    run_dir = default_run_dir(_project(root))
    status = read_status(run_dir)
    line = status.summary()
    if status.metrics.get("iou") is not None:
        line += f" · held-out IoU {status.metrics['iou']:.3f}"
    preview = latest_preview(run_dir)
    key = f"{line}|{preview.stat().st_mtime_ns if preview else 0}"
    if key == seen:
        return {"seg_seen": seen}  # nothing new to draw (an empty dict would be read as one output value)
    return {"seg_train_status": line, "seg_preview": str(preview) if preview else None, "seg_seen": key}


@guarded
def xseg_apply(root: str, side: str) -> dict[str, Any]:
    from ..segment.predict import apply_masks
    from ..segment.trainer import default_run_dir

    project = _project(root)
    sides = ("src", "dst") if side == "both" else (_check_side(side),)
    summary = apply_masks(default_run_dir(project), [project.aligned_dir(s) for s in sides])
    return {"seg_train_status": f"XSeg masks written into {summary.written}/{summary.faces} faces "
                                f"({summary.faces_per_second:.1f} faces/s); masked training and the xseg-* "
                                "merge modes use them now"}


def build(ctx: AppContext, root_state: Any, tab: Any, wire: Callable[..., Any], intro: str) -> None:
    """Lay out the Segment tab inside the current ``gr.Tab`` and wire its events (``wire`` = ui._wire)."""
    import gradio as gr

    gr.Markdown(intro, elem_classes=["learn"])
    with gr.Row():
        side = gr.Radio(["src", "dst"], value="dst", label="faceset", elem_id="seg-side")
        filt = gr.Dropdown(list(FILTERS), value="all", label="show faces", elem_id="seg-filter")
        mode = gr.Radio(["include", "exclude"], value="include", label="polygon type (Q / W)", elem_id="seg-mode")
        show_pred = gr.Checkbox(True, label="show the XSeg prediction", elem_id="seg-show-pred")
    info = gr.Markdown(elem_id="seg-info")
    with gr.Row():
        with gr.Column(scale=3):
            view = gr.Image(label="click to add points (aligned face, 512 px)", interactive=False, height=VIEW,
                            width=VIEW, elem_id="seg-view", buttons=[], format="jpeg")
            polys = gr.HTML(polygons_payload((), VIEW), elem_id="seg-polys", js_on_load=None, visible="hidden")
        with gr.Column(scale=2):
            with gr.Row():
                prev_btn = gr.Button("◀ previous (A)", elem_id="seg-prev")
                next_btn = gr.Button("next (D) ▶", elem_id="seg-next")
            with gr.Row():
                close_btn = gr.Button("close polygon (C)", elem_id="seg-close")
                undo_btn = gr.Button("undo point (Z)", elem_id="seg-undo")
                delete_btn = gr.Button("delete polygon (Del)", elem_id="seg-delete")
            copy_btn = gr.Button("copy the previous face's polygons", elem_id="seg-copy")
            gr.Markdown("#### XSeg model (`PROJECT/xseg/default`)")
            with gr.Row():
                steps = gr.Number(0, precision=0, label="steps (0 = until stopped)")
                train_btn = gr.Button("Train XSeg (background)", variant="primary", elem_id="seg-train")
            with gr.Row():
                pause_btn = gr.Button("pause")
                resume_btn = gr.Button("resume")
                stop_btn = gr.Button("stop")
            with gr.Row():
                apply_side = gr.Radio(["both", "src", "dst"], value="both", label="apply to")
                apply_btn = gr.Button("Apply masks to faces", elem_id="seg-apply")
            train_status = gr.Markdown(elem_id="seg-train-status")
            preview = gr.Image(label="XSeg preview: image | label | prediction", interactive=False,
                               elem_id="seg-preview")
    state = gr.State({})
    R = {"root": root_state}
    out = {"seg_view": view, "seg_state": state, "seg_info": info, "status": info, "seg_polys": polys}
    refresh = partial(segment_refresh, ctx)
    refresh.__name__ = "segment_refresh"  # type: ignore[attr-defined]
    wire([tab.select, side.input, filt.input, show_pred.input], refresh,
         {**R, "side": side, "filt": filt, "show_prediction": show_pred, "state": state}, out)
    tab.select(None, js=KEYS_JS)
    tab.select(None, js=OVERLAY_JS)
    wire(view.select, partial(segment_click, ctx), {**R, "state": state, "mode": mode, "show_prediction": show_pred},
         out, select=True, trigger_mode="multiple", show_progress="hidden")  # every click counts, in order
    for btn, action in ((close_btn, "close"), (undo_btn, "undo"), (delete_btn, "delete"), (copy_btn, "copy")):
        wire(btn.click, partial(segment_action, ctx, action=action), {**R, "state": state, "show_prediction": show_pred},
             out, show_progress="hidden")
    for btn, delta in ((prev_btn, -1), (next_btn, 1)):
        wire(btn.click, partial(segment_nav, ctx, delta=delta), {**R, "state": state, "show_prediction": show_pred},
             out, show_progress="hidden")
    t_out = {"seg_train_status": train_status, "status": train_status, "seg_preview": preview}
    wire(train_btn.click, xseg_train, {**R, "steps": steps}, t_out, concurrency_id="heavy")
    for btn, command in ((pause_btn, "pause"), (resume_btn, "resume"), (stop_btn, "stop")):
        wire(btn.click, partial(xseg_control, command=command), R, t_out)
    wire(apply_btn.click, xseg_apply, {**R, "side": apply_side}, t_out, concurrency_id="heavy")
    seen = gr.State(None)
    timer = gr.Timer(2.0)
    wire(timer.tick, xseg_status, {**R, "seen": seen}, {**t_out, "seg_seen": seen}, show_progress="hidden")
