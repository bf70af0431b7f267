"""Class activation maps drawn over the photo (lesson 6), with numpy and Pillow only.

The exported classifier has a second output, ``cam``: for every class, the last
convolutional features weighted by the classifier's weights for that class
(``cam[k] = sum_c fc.weight[k, c] * features[c]``). Average-pooled, a class's map
plus the bias is its logit, so the map shows where the evidence for the class lies.
"""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

INFERNO = np.array(
    [[0, 0, 4], [40, 11, 84], [101, 21, 110], [159, 42, 99], [212, 72, 66], [245, 125, 21], [250, 193, 39], [252, 255, 164]],
    dtype=np.float32,
)
"""Anchors of matplotlib's ``inferno`` colour map, evenly spaced from 0 to 1."""
SHORTEST_SIDE, LONGEST_SIDE = 224, 512
"""The heatmap is drawn at the photo's size, brought within these bounds (aspect ratio kept)."""


def colormap(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1] -> ``uint8`` RGB through the ``inferno`` anchors."""
    stops = np.linspace(0.0, 1.0, len(INFERNO))
    v = np.clip(values, 0.0, 1.0)
    return np.stack([np.interp(v, stops, INFERNO[:, c]) for c in range(3)], axis=-1).round().astype(np.uint8)


def normalised(cam: np.ndarray) -> np.ndarray:
    """A map scaled to [0, 1] (all zeros when it is flat)."""
    cam = np.nan_to_num(cam.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = float(cam.min()), float(cam.max())
    return np.zeros_like(cam) if hi - lo <= 1e-12 else (cam - lo) / (hi - lo)


def display_size(width: int, height: int) -> tuple[int, int]:
    """The photo's size scaled so that it is at most ``LONGEST_SIDE`` and, within that, at least ``SHORTEST_SIDE``."""
    scale = min(LONGEST_SIDE / max(width, height), max(1.0, SHORTEST_SIDE / min(width, height)))
    return max(1, round(width * scale)), max(1, round(height * scale))


def overlay(photo: Image.Image, cam: np.ndarray, alpha: float = 0.5) -> Image.Image:
    """The map ``cam`` (h, w), upsampled to the photo (the model saw it stretched to a square) and blended over it."""
    size = display_size(*photo.size)
    base = np.asarray(photo.convert("RGB").resize(size, Image.Resampling.BILINEAR), dtype=np.float32)
    heat = Image.fromarray((normalised(cam) * 255).round().astype(np.uint8)).resize(size, Image.Resampling.BILINEAR)
    colour = colormap(np.asarray(heat, dtype=np.float32) / 255.0).astype(np.float32)
    return Image.fromarray(((1 - alpha) * base + alpha * colour).round().clip(0, 255).astype(np.uint8))


def png_base64(img: Image.Image) -> str:
    """An image as base64 PNG text (for JSON answers)."""
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False, compress_level=6)
    return base64.b64encode(buf.getvalue()).decode("ascii")
