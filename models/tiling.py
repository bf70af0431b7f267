"""Overlapping fixed-size tiles for image-to-image models (super-resolution serving).

The image is cut into windows of ``tile`` x ``tile`` pixels (or the image's
own height or width where it is smaller) that lie inside the image. Each
window contributes its core: the window less ``margin`` pixels on every side
that is not the image's own edge. Cores cover the image exactly once. A model
whose output pixel depends on input pixels at most ``margin`` away (its
receptive field) gives, through the tiles, exactly its whole-image result,
image borders included (a window at the border sees the border, as the whole
image does); with a larger receptive field the tiles differ from the whole
image only near the cores' seams.

Every window of an image at least ``tile`` pixels in both directions has the
same shape, so tiles of different requests run in one model batch, and memory
stays bounded by the batch of tiles whatever the image's size.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Tile:
    top: int
    left: int
    """The core's position in the image."""
    height: int
    width: int
    """The core's size."""
    win_top: int
    win_left: int
    """The window's position in the image."""


def _spans(n: int, tile: int, margin: int) -> list[tuple[int, int, int]]:
    """(core start, window start, core length) along one axis of length ``n``."""
    if n <= tile:
        return [(0, 0, n)]
    core = tile - 2 * margin
    return [(p, min(max(p - margin, 0), n - tile), min(core, n - p)) for p in range(0, n, core)]


@dataclass(frozen=True)
class TilePlan:
    height: int
    width: int
    tile: int
    margin: int
    scale: int

    def __post_init__(self) -> None:
        if self.tile - 2 * self.margin < 1:
            raise ValueError(f"tile {self.tile} leaves no core inside margins of {self.margin}")
        if self.height < 1 or self.width < 1:
            raise ValueError(f"cannot tile an empty {self.height}x{self.width} image")

    @property
    def window(self) -> tuple[int, int]:
        """(height, width) of every window of this image."""
        return min(self.tile, self.height), min(self.tile, self.width)

    def tiles(self) -> Iterator[Tile]:
        for top, win_top, h in _spans(self.height, self.tile, self.margin):
            for left, win_left, w in _spans(self.width, self.tile, self.margin):
                yield Tile(top, left, h, w, win_top, win_left)

    def __len__(self) -> int:
        return len(_spans(self.height, self.tile, self.margin)) * len(_spans(self.width, self.tile, self.margin))

    def cut(self, image: np.ndarray, t: Tile) -> np.ndarray:
        """The ``(C, *window)`` window of ``image`` ``(C, H, W)`` around tile ``t``'s core."""
        wh, ww = self.window
        return image[:, t.win_top : t.win_top + wh, t.win_left : t.win_left + ww]

    def place(self, out: np.ndarray, upscaled: np.ndarray, t: Tile, channels_last: bool = False) -> None:
        """Write the core of one upscaled window ``(C, h*s, w*s)`` into ``out``: ``(C, H*s, W*s)``, or ``(H*s, W*s, C)``."""
        s = self.scale
        dy, dx = (t.top - t.win_top) * s, (t.left - t.win_left) * s
        core = upscaled[:, dy : dy + t.height * s, dx : dx + t.width * s]
        rows, cols = slice(t.top * s, (t.top + t.height) * s), slice(t.left * s, (t.left + t.width) * s)
        if channels_last:
            out[rows, cols] = core.transpose(1, 2, 0)
        else:
            out[:, rows, cols] = core


def upscale_tiled(
    image: np.ndarray,
    run: Callable[[np.ndarray], np.ndarray],
    scale: int,
    tile: int,
    margin: int,
    batch: int = 8,
) -> np.ndarray:
    """Run ``run`` (``(n, C, h, w)`` -> ``(n, C, h*scale, w*scale)``) over ``image`` ``(C, H, W)`` in tiles."""
    c, h, w = image.shape
    plan = TilePlan(h, w, tile, margin, scale)
    out = np.empty((c, h * scale, w * scale), dtype=np.float32)
    tiles = list(plan.tiles())
    for start in range(0, len(tiles), batch):
        chunk = tiles[start : start + batch]
        result = run(np.stack([plan.cut(image, t) for t in chunk]))
        for upscaled, t in zip(result, chunk):
            plan.place(out, upscaled, t)
    return out
