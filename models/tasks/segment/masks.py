"""Segmentation masks as the service returns them: class indices at the photo's size, shares, colours, PNG."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from PIL import Image


def predict_mask(logits: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Logits ``(C, h, w)`` of one image -> ``uint8`` class indices at ``size`` = (width, height), nearest."""
    pred = logits.argmax(axis=0).astype(np.uint8)
    img = Image.fromarray(pred, mode="L")
    if img.size != tuple(size):
        img = img.resize(tuple(size), Image.Resampling.NEAREST)
    return np.asarray(img, dtype=np.uint8)


def class_shares(mask: np.ndarray, classes: list[str]) -> list[dict[str, Any]]:
    """Share of the pixels per class present in ``mask``, largest first."""
    counts = np.bincount(mask.ravel(), minlength=len(classes))[: len(classes)]
    total = max(int(mask.size), 1)
    order = [int(i) for i in np.argsort(-counts, kind="stable") if counts[i] > 0]
    return [{"label": classes[i], "index": i, "share": round(float(counts[i]) / total, 6)} for i in order]


def palette(n: int) -> np.ndarray:
    """A fixed ``(n, 3)`` uint8 colour per class (``Void`` and unknown get black where used)."""
    rng = np.random.default_rng(12345)
    base = np.array(
        [[128, 64, 128], [70, 130, 180], [70, 70, 70], [107, 142, 35], [220, 20, 60], [0, 0, 142], [244, 35, 232],
         [250, 170, 30], [220, 220, 0], [152, 251, 152], [190, 153, 153], [102, 102, 156], [0, 60, 100], [119, 11, 32]],
        dtype=np.uint8,
    )
    extra = rng.integers(40, 256, size=(max(n - len(base), 0), 3), dtype=np.uint8)
    return np.concatenate([base, extra])[:n]


def colourise(mask: np.ndarray, n_classes: int) -> np.ndarray:
    """Class indices -> RGB uint8 (indices outside the classes are black)."""
    colours = np.concatenate([palette(n_classes), np.zeros((256 - n_classes, 3), dtype=np.uint8)])
    return colours[mask]


def overlay(photo: np.ndarray, mask: np.ndarray, n_classes: int) -> np.ndarray:
    """The colourised mask blended half and half over an RGB uint8 photo of the same size (integer maths: big images)."""
    blended = photo.astype(np.uint16)
    blended += colourise(mask, n_classes)
    blended += 1
    blended //= 2
    return blended.astype(np.uint8)


def png_bytes(arr: np.ndarray) -> bytes:
    """An HW (8-bit grey) or HWC (RGB) uint8 array as PNG bytes."""
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def decode_mask(png_base64: str) -> np.ndarray:
    """A ``mask_png`` of the service's answer back to its class indices."""
    import base64

    return np.asarray(Image.open(io.BytesIO(base64.b64decode(png_base64))), dtype=np.uint8)
