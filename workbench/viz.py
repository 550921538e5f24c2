"""Drawing helpers for notebooks and the Gradio app.

Every function returns a NEW RGB float32 (H, W, 3) array in [0, 1] and leaves its inputs untouched;
nothing here opens a window or calls ``plt.show``. Grey (H, W) images and uint8 images are accepted and
converted. Colours are RGB tuples in [0, 1].
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType

import cv2
import numpy as np

from .face_constants import LANDMARK_GROUPS

LANDMARK_GROUP_NAMES: Mapping[str, range] = MappingProxyType(
    {name: range(s.start, s.stop) for name, s in LANDMARK_GROUPS.items()}
)
"""68-point group name -> landmark indices (subject's right/left: the right eye is on the image's left)."""

# Which groups are drawn as closed loops; the nose is drawn as the ridge plus the nostril arc.
_CLOSED_GROUPS = ("right_eye", "left_eye")
_OPEN_GROUPS = ("jaw", "right_eyebrow", "left_eyebrow")
_LINE = cv2.LINE_AA


def _rgb(image: np.ndarray) -> np.ndarray:
    """Copy of ``image`` as contiguous RGB float32 in [0, 1]."""
    img = np.asarray(image)
    if img.dtype == np.uint8:
        img = img.astype(np.float32) / 255.0
    else:
        img = img.astype(np.float32)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    elif img.ndim == 3 and img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    elif img.ndim == 3 and img.shape[2] == 4:
        img = img[:, :, :3]
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"image must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got {np.shape(image)}")
    return np.ascontiguousarray(np.clip(img, 0.0, 1.0))


def _color(color: Sequence[float]) -> tuple[float, float, float]:
    c = tuple(float(v) for v in color)
    if len(c) != 3:
        raise ValueError(f"color must be an (r, g, b) triple in [0, 1], got {color}")
    return c  # type: ignore[return-value]


def _auto_thickness(img: np.ndarray) -> int:
    # One pixel per ~300 px of the short side keeps lines visible on 1080p frames and thin on 256px faces.
    return max(1, int(round(min(img.shape[:2]) / 300)))


# Drawing at 1/16 px precision (cv2 "shift") keeps sub-pixel landmark positions visible on small faces.
_SHIFT = 4
_SCALE = 1 << _SHIFT


def _fixed(points: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(points, np.float64) * _SCALE).astype(np.int32)


def draw_landmarks(
    image: np.ndarray,
    landmarks: np.ndarray,
    color: Sequence[float] = (0.0, 1.0, 0.0),
    radius: int | None = None,
    connect: bool = True,
    thickness: int | None = None,
) -> np.ndarray:
    """Draw 68 landmarks, optionally joined within their groups (jaw, brows, nose, eyes, lips).

    Args:
        image: (H, W[, C]) image.
        landmarks: (68, 2) pixel coordinates (other point counts are drawn as dots only).
        color: RGB in [0, 1].
        radius: dot radius in pixels; default scales with the image (1 px per ~300 px of short side).
        connect: join points within each 68-point group, closing the eyes and the lips.
        thickness: line thickness; default scales with the image.

    Returns:
        (H, W, 3) float32 copy with the drawing.
    """
    out = _rgb(image)
    pts = np.asarray(landmarks, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"landmarks must have shape (N, 2), got {pts.shape}")
    col = _color(color)
    t = thickness or _auto_thickness(out)
    r = radius if radius is not None else t
    if connect and len(pts) == 68:
        fp = _fixed(pts)
        polys_open = [fp[LANDMARK_GROUPS[g]] for g in _OPEN_GROUPS]
        # Nose: the bridge 27..30 then the nostril arc 31..35 joined back to the tip (30), as DFL draws it.
        polys_open.append(fp[27:31])
        polys_open.append(np.concatenate([fp[30:31], fp[31:36], fp[30:31]]))
        polys_closed = [fp[LANDMARK_GROUPS[g]] for g in _CLOSED_GROUPS]
        polys_closed += [fp[48:60], fp[60:68]]  # outer and inner lips
        cv2.polylines(out, polys_open, False, col, t, _LINE, _SHIFT)
        cv2.polylines(out, polys_closed, True, col, t, _LINE, _SHIFT)
    for x, y in _fixed(pts):
        cv2.circle(out, (int(x), int(y)), max(1, int(r)) * _SCALE, col, -1, _LINE, _SHIFT)
    return np.clip(out, 0.0, 1.0)


def draw_box(
    image: np.ndarray,
    box: Sequence[float],
    color: Sequence[float] = (1.0, 0.0, 0.0),
    thickness: int | None = None,
    label: str | None = None,
) -> np.ndarray:
    """Draw an axis-aligned box ``(x0, y0, x1, y1)`` (e.g. a detector box), with an optional label.

    Returns:
        (H, W, 3) float32 copy with the drawing.
    """
    out = _rgb(image)
    if len(box) != 4:
        raise ValueError(f"box must be (x0, y0, x1, y1), got {box}")
    x0, y0, x1, y1 = (float(v) for v in box)
    col = _color(color)
    t = thickness or _auto_thickness(out)
    p0 = tuple(int(v) for v in _fixed(np.array([x0, y0])))
    p1 = tuple(int(v) for v in _fixed(np.array([x1, y1])))
    cv2.rectangle(out, p0, p1, col, t, _LINE, _SHIFT)
    if label:
        scale = _font_scale(out)
        org = (int(round(x0)), max(0, int(round(y0)) - t - 2))
        _put_text(out, label, org, scale, col, max(1, t))
    return np.clip(out, 0.0, 1.0)


def draw_crop_square(
    image: np.ndarray,
    corners: np.ndarray,
    color: Sequence[float] = (0.0, 0.0, 1.0),
    thickness: int | None = None,
) -> np.ndarray:
    """Draw the aligned crop's square on the frame, with a tick in its top-left corner like DFL's debug image.

    Because the square is rotated with the face, the tick shows which edge is the top of the aligned
    face (a tick at the bottom means the face was upside down).

    Args:
        image: (H, W[, C]) frame.
        corners: (4, 2) frame points TL, TR, BR, BL of the face square (see ``align.crop_corners``).
        color: RGB in [0, 1].
        thickness: line thickness; default scales with the image.

    Returns:
        (H, W, 3) float32 copy with the drawing.
    """
    out = _rgb(image)
    c = np.asarray(corners, dtype=np.float64)
    if c.shape != (4, 2):
        raise ValueError(f"corners must have shape (4, 2), got {c.shape}")
    col = _color(color)
    t = thickness or _auto_thickness(out)
    cv2.polylines(out, [_fixed(c)], True, col, t, _LINE, _SHIFT)
    # DFL's tick: the triangle (0.05, 0), (0.1, 0.1), (0, 0.05) in face-square units, mapped into the frame.
    u = c[1] - c[0]
    v = c[3] - c[0]
    tick = np.array([c[0] + 0.05 * u, c[0] + 0.1 * u + 0.1 * v, c[0] + 0.05 * v])
    cv2.polylines(out, [_fixed(tick)], True, col, t, _LINE, _SHIFT)
    return np.clip(out, 0.0, 1.0)


def overlay_mask(
    image: np.ndarray,
    mask: np.ndarray,
    color: Sequence[float] = (1.0, 0.0, 0.0),
    alpha: float = 0.5,
) -> np.ndarray:
    """Tint the masked area: ``image * (1 - alpha*m) + color * alpha*m``.

    Args:
        image: (H, W[, C]) image.
        mask: (H, W) mask in [0, 1] (soft values give a soft tint); must match the image size.
        color: RGB tint in [0, 1].
        alpha: opacity of the tint where the mask is 1.

    Returns:
        (H, W, 3) float32.
    """
    out = _rgb(image)
    m = np.asarray(mask)
    if m.ndim == 3 and m.shape[2] == 1:
        m = m[:, :, 0]
    if m.shape != out.shape[:2]:
        raise ValueError(f"mask shape {m.shape} does not match image shape {out.shape[:2]}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    m = m.astype(np.float32) / 255.0 if m.dtype == np.uint8 else m.astype(np.float32)
    a = (np.clip(m, 0.0, 1.0) * alpha)[:, :, None]
    return np.clip(out * (1.0 - a) + np.asarray(_color(color), np.float32) * a, 0.0, 1.0).astype(np.float32)


def _font_scale(img: np.ndarray) -> float:
    return max(0.35, min(img.shape[:2]) / 500.0)


def _put_text(
    out: np.ndarray, text: str, org: tuple[int, int], scale: float, color: Sequence[float], thick: int
) -> None:
    # OpenCV renders text only into 8-bit images: draw an anti-aliased coverage map, then blend it in.
    cover = np.zeros(out.shape[:2], np.uint8)
    cv2.putText(cover, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, 255, thick, _LINE)
    a = (cover.astype(np.float32) / 255.0)[:, :, None]
    out *= 1.0 - a
    out += a * np.asarray(_color(color), np.float32)


def label_image(
    image: np.ndarray,
    text: str,
    color: Sequence[float] = (1.0, 1.0, 1.0),
    background: Sequence[float] = (0.0, 0.0, 0.0),
) -> np.ndarray:
    """Write ``text`` on a dark banner across the top of a copy of ``image`` (same size as the input).

    Returns:
        (H, W, 3) float32.
    """
    out = _rgb(image)
    if not text:
        return out
    scale = _font_scale(out)
    thick = max(1, int(round(scale * 1.5)))
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    pad = max(2, th // 3)
    banner_h = min(out.shape[0], th + base + 2 * pad)
    # A translucent banner keeps the picture visible while the text stays readable on any background.
    out[:banner_h] = 0.35 * out[:banner_h] + 0.65 * np.asarray(_color(background), np.float32)
    _put_text(out, text, (pad, pad + th), scale, color, thick)
    return np.clip(out, 0.0, 1.0)


def image_grid(
    images: Sequence[np.ndarray],
    ncols: int,
    labels: Sequence[str] | None = None,
    pad: int = 2,
    pad_value: float = 1.0,
) -> np.ndarray:
    """Tile images into a grid; every cell takes the size of the first image.

    Args:
        images: non-empty sequence of (H, W[, C]) images (grey and uint8 accepted). Images of other sizes
            are resized (area interpolation when shrinking, linear when enlarging).
        ncols: number of columns (rows follow).
        labels: optional text per image, drawn with :func:`label_image`.
        pad: pixels between and around cells.
        pad_value: grey level of the padding.

    Returns:
        (rows*(h+pad)+pad, ncols*(w+pad)+pad, 3) float32.
    """
    if len(images) == 0:
        raise ValueError("image_grid needs at least one image")
    if ncols < 1:
        raise ValueError(f"ncols must be >= 1, got {ncols}")
    if labels is not None and len(labels) != len(images):
        raise ValueError(f"got {len(labels)} labels for {len(images)} images")
    if pad < 0:
        raise ValueError(f"pad must be >= 0, got {pad}")
    cells = [_rgb(img) for img in images]
    h, w = cells[0].shape[:2]
    ncols = min(ncols, len(cells))
    nrows = -(-len(cells) // ncols)
    grid = np.full((nrows * (h + pad) + pad, ncols * (w + pad) + pad, 3), pad_value, np.float32)
    for i, cell in enumerate(cells):
        if cell.shape[:2] != (h, w):
            shrink = cell.shape[0] * cell.shape[1] > h * w
            cell = cv2.resize(cell, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
        if labels is not None and labels[i]:
            cell = label_image(cell, labels[i])
        r, c = divmod(i, ncols)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        grid[y : y + h, x : x + w] = cell
    return np.clip(grid, 0.0, 1.0)


def loss_plot(
    history: Mapping[str, Sequence[float]],
    size: tuple[int, int] = (640, 320),
    title: str | None = None,
    log_y: bool = False,
) -> np.ndarray:
    """Render loss curves to an RGB array with matplotlib's Agg backend (no pyplot, no window).

    Args:
        history: series name -> values per logged step (e.g. ``{"src": [...], "dst": [...]}``).
            Non-finite values are skipped; empty series are listed in the legend but not drawn.
        size: (width, height) of the output in pixels.
        title: optional axes title.
        log_y: logarithmic y axis (useful early in training when the loss falls by orders of magnitude).

    Returns:
        (height, width, 3) float32 in [0, 1].
    """
    series = {name: list(enumerate(values)) for name, values in history.items()}
    return series_plot(series, size=size, title=title, log_y=log_y, ylabel="loss")


def series_plot(
    series: Mapping[str, Sequence[tuple[float, float]]],
    size: tuple[int, int] = (640, 320),
    title: str | None = None,
    log_y: bool = False,
    ylabel: str = "value",
) -> np.ndarray:
    """Render ``{name: [(step, value), ...]}`` as lines on a numeric step axis (Agg backend, no window).

    A series with a single point is drawn as a marker (a line needs two); non-finite values are skipped.
    Returns (height, width, 3) float32 in [0, 1].
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    width, height = int(size[0]), int(size[1])
    if width < 32 or height < 32:
        raise ValueError(f"size must be at least (32, 32), got {size}")
    dpi = 100
    fig = Figure(figsize=(width / dpi, height / dpi), dpi=dpi)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    drawn = False
    for name, points in series.items():
        xy = np.asarray([(float(x), float(y)) for x, y in points], dtype=np.float64).reshape(-1, 2)
        x, y = xy[:, 0], xy[:, 1]
        keep = np.isfinite(y) & np.isfinite(x)
        if log_y:
            keep &= y > 0
        ax.plot(x[keep], y[keep], label=str(name), linewidth=1.8, marker="o" if keep.sum() == 1 else None)
        drawn = drawn or bool(keep.any())
    if not drawn:
        ax.text(0.5, 0.5, "no data yet", ha="center", va="center", transform=ax.transAxes)
    elif log_y:
        ax.set_yscale("log")
    if series:
        ax.legend(loc="upper right", fontsize="small")
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    canvas.draw()
    rgba = np.asarray(canvas.buffer_rgba())
    out = rgba[:, :, :3].astype(np.float32) / 255.0
    if out.shape[:2] != (height, width):  # dpi rounding can be off by a pixel
        out = cv2.resize(out, (width, height), interpolation=cv2.INTER_AREA)
    return out


def fit_long_side(image: np.ndarray, size: int | None) -> np.ndarray:
    """Float32 [0, 1] copy resized so its longer side is ``size`` px (area when shrinking, cubic when enlarging).

    ``size=None`` only converts (uint8 -> float, clipped to [0, 1]).
    """
    img = np.asarray(image)
    if img.dtype == np.uint8:
        img = img.astype(np.float32) / 255.0
    img = np.clip(img.astype(np.float32), 0.0, 1.0)
    if size is None:
        return img
    h, w = img.shape[:2]
    scale = size / max(h, w)
    if abs(scale - 1.0) < 1e-6:
        return img
    dsize = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(img, dsize, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC).clip(0, 1)


def letterbox(image: np.ndarray, box: tuple[int, int]) -> np.ndarray:
    """Centre an image on a white (box_h, box_w) canvas, keeping its aspect ratio (shrunk first if too big)."""
    h, w = image.shape[:2]
    if (h, w) == tuple(box):
        return image
    if h > box[0] or w > box[1]:
        image = fit_long_side(image, None)
        scale = min(box[0] / h, box[1] / w)
        image = cv2.resize(image, (max(1, int(w * scale)), max(1, int(h * scale))), interpolation=cv2.INTER_AREA)
        h, w = image.shape[:2]
    canvas = np.ones((*box, image.shape[2]), np.float32)
    y, x = (box[0] - h) // 2, (box[1] - w) // 2
    canvas[y:y + h, x:x + w] = image
    return canvas
