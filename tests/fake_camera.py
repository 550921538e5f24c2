"""A fake webcam for Chromium (``--use-file-for-fake-video-capture=clip.y4m``) whose frames carry their number.

Each frame gets a 16-block strip along its bottom edge: blocks 0..11 are the frame number's bits (LSB first), blocks
12..15 the fixed pattern 1,1,0,0 that tells the reading direction (a mirrored webcam reverses it). The same strip can
be read from the camera preview and from the app's output image, so "camera frame -> display" latency is measured
in frames of the clip.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

WIDTH, HEIGHT, FPS = 640, 480, 30
BLOCKS, BITS = 16, 12
CHECK = (1, 1, 0, 0)
STRIP = 24  # strip height, px

# JavaScript: decode the strip of an <img> or <video> element -> {n, mirrored} or null.
DECODE_JS = """(el) => {
  const c = document.createElement('canvas'); c.width = __W__; c.height = __H__;
  const g = c.getContext('2d', {willReadFrequently: true});
  try { g.drawImage(el, 0, 0, c.width, c.height); } catch (e) { return null; }
  const y = c.height - __STRIP__ / 2, bw = c.width / __BLOCKS__;
  const bits = [];
  for (let i = 0; i < __BLOCKS__; i++) {
    const d = g.getImageData(Math.round(i * bw + bw / 2) - 2, Math.round(y) - 2, 4, 4).data;
    let s = 0; for (let k = 0; k < d.length; k += 4) s += 0.299 * d[k] + 0.587 * d[k + 1] + 0.114 * d[k + 2];
    bits.push(s / (d.length / 4) > 128 ? 1 : 0);
  }
  const check = __CHECK__;
  const read = (b) => { for (let i = 0; i < 4; i++) if (b[__BITS__ + i] !== check[i]) return null;
                        let n = 0; for (let i = 0; i < __BITS__; i++) n |= b[i] << i; return n; };
  let n = read(bits); if (n !== null) return {n, mirrored: false};
  n = read(bits.slice().reverse()); if (n !== null) return {n, mirrored: true};
  return null;
}""".replace("__W__", str(WIDTH)).replace("__H__", str(HEIGHT)).replace("__STRIP__", str(STRIP)).replace(
    "__BLOCKS__", str(BLOCKS)).replace("__CHECK__", str(list(CHECK))).replace("__BITS__", str(BITS))


def stamp(frame: np.ndarray, number: int) -> np.ndarray:
    """Copy of an RGB uint8 frame (WIDTH x HEIGHT) with the frame-number strip drawn at the bottom."""
    out = frame.copy()
    bits = [(number >> i) & 1 for i in range(BITS)] + list(CHECK)
    bw = WIDTH // BLOCKS
    for i, bit in enumerate(bits):
        out[HEIGHT - STRIP:, i * bw:(i + 1) * bw] = 255 if bit else 0
    return out


def write_y4m(frames: list[np.ndarray], path: Path) -> Path:
    """Write RGB uint8 frames as a 4:2:0 YUV4MPEG2 clip (each frame stamped with its number)."""
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{WIDTH} H{HEIGHT} F{FPS}:1 Ip A1:1 C420jpeg\n".encode())
        for i, frame in enumerate(frames):
            i420 = cv2.cvtColor(stamp(frame, i), cv2.COLOR_RGB2YUV_I420)
            f.write(b"FRAME\n")
            f.write(i420.tobytes())
    return path
