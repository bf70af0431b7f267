"""Overlapping fixed-size tiles for image-to-image models (super-resolution serving).

The image is padded by repeating its edge pixels (``margin`` on every side, and
up to a whole number of tiles on the bottom and right), cut into ``tile`` x
``tile`` windows whose centres (``core = tile - 2 * margin``) cover it without
overlap, and each window's upscaled centre is written into the output. Every
tile has the same size, so tiles of any image (and of different requests) run
in one batch, and memory stays bounded by the tile batch whatever the image's
size. For a model that only looks ``margin`` pixels around each output pixel
(bicubic upscaling looks 2), tiled and whole-image results are identical;
edge-repeating padding matches the edge clamping of bicubic upscaling.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np


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
    def core(self) -> int:
        return self.tile - 2 * self.margin

    @property
    def rows(self) -> int:
        return -(-self.height // self.core)

    @property
    def cols(self) -> int:
        return -(-self.width // self.core)

    def __len__(self) -> int:
        return self.rows * self.cols

    def positions(self) -> Iterator[tuple[int, int]]:
        """Top-left corner of each tile's core, in image coordinates (= the tile's corner in the padded image)."""
        for i in range(self.rows):
            for j in range(self.cols):
                yield i * self.core, j * self.core

    def pad(self, image: np.ndarray) -> np.ndarray:
        """``(C, H, W)`` -> edge-padded ``(C, rows*core + 2*margin, cols*core + 2*margin)``."""
        m = self.margin
        extra_h = self.rows * self.core - self.height
        extra_w = self.cols * self.core - self.width
        return np.pad(image, ((0, 0), (m, m + extra_h), (m, m + extra_w)), mode="edge")

    def cut(self, padded: np.ndarray, top: int, left: int) -> np.ndarray:
        """The ``(C, tile, tile)`` window whose core starts at image position (top, left)."""
        return padded[:, top : top + self.tile, left : left + self.tile]

    def place(self, out: np.ndarray, upscaled: np.ndarray, top: int, left: int, channels_last: bool = False) -> None:
        """Write the core of one upscaled tile ``(C, tile*s, tile*s)`` into ``out``: ``(C, H*s, W*s)``, or ``(H*s, W*s, C)``."""
        s, m, c = self.scale, self.margin, self.core
        core = upscaled[:, m * s : (m + c) * s, m * s : (m + c) * s]
        h = min(c * s, (self.height - top) * s)
        w = min(c * s, (self.width - left) * s)
        if channels_last:
            out[top * s : top * s + h, left * s : left * s + w] = core[:, :h, :w].transpose(1, 2, 0)
        else:
            out[:, top * s : top * s + h, left * s : left * s + w] = core[:, :h, :w]


def upscale_tiled(
    image: np.ndarray,
    run: Callable[[np.ndarray], np.ndarray],
    scale: int,
    tile: int,
    margin: int,
    batch: int = 8,
) -> np.ndarray:
    """Run ``run`` (``(n, C, tile, tile)`` -> ``(n, C, tile*scale, tile*scale)``) over ``image`` ``(C, H, W)`` in tiles."""
    c, h, w = image.shape
    plan = TilePlan(h, w, tile, margin, scale)
    padded = plan.pad(image)
    out = np.empty((c, h * scale, w * scale), dtype=np.float32)
    positions = list(plan.positions())
    for start in range(0, len(positions), batch):
        chunk = positions[start : start + batch]
        result = run(np.stack([plan.cut(padded, t, l) for t, l in chunk]))
        for upscaled, (t, l) in zip(result, chunk):
            plan.place(out, upscaled, t, l)
    return out
