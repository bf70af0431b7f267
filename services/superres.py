"""The ``superres`` API: an image in, the model's upscaling out as a PNG.

Images are processed in overlapping tiles of the fixed size the model was
registered with (``tile``, ``margin`` in its spec; :mod:`models.tiling`): every
tile of an image at least ``tile`` pixels each way has the same shape, so tiles
of concurrent requests run in one model batch, and memory stays bounded
whatever the image's size (a request queues at most ``TILE_WINDOW`` tiles at a
time). With ``margin`` at least the network's receptive field, the result is
exactly the whole-image result. The input pixel cap is ``ZOO_SUPERRES_MAX_PIXELS`` (default 4,000,000,
so at most 16 megapixels out at 2x), and never above ``ZOO_MAX_IMAGE_PIXELS``.
"""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Annotated

import bentoml
import numpy as np
from PIL import Image
from pydantic import Field
from starlette.responses import Response

from models.images import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, decode_image
from models.onnx_model import OnnxModel
from models.tasks.superres import to_array
from models.tiling import Tile, TilePlan
from services.base import VERSION_HEADER, TaskRunner, ZooService, env_int, service_options, with_middleware

DEFAULT_SUPERRES_MAX_PIXELS = 4_000_000
TILE_WINDOW = 16
"""Tiles of one request in flight at once."""


def max_pixels() -> int:
    return min(env_int("ZOO_SUPERRES_MAX_PIXELS", DEFAULT_SUPERRES_MAX_PIXELS), env_int("ZOO_MAX_IMAGE_PIXELS", DEFAULT_MAX_PIXELS))


def encode_png(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG", compress_level=3)
    return buf.getvalue()


class SuperresRunner(TaskRunner):
    task = "superres"

    def __init__(self, model: OnnxModel) -> None:
        super().__init__(model)
        self.scale = int(self.spec["scale"])
        self.tile = int(self.spec["tile"])
        self.margin = int(self.spec["margin"])

    def _prepare(self, path: Path) -> tuple[TilePlan, np.ndarray]:
        img = decode_image(path, max_pixels(), env_int("ZOO_MAX_BODY_BYTES", DEFAULT_MAX_BYTES))
        x = to_array(img)
        return TilePlan(x.shape[1], x.shape[2], self.tile, self.margin, self.scale), x

    async def _tile(self, plan: TilePlan, image: np.ndarray, out: np.ndarray, tile: Tile) -> None:
        upscaled = await self.batcher.submit(np.ascontiguousarray(plan.cut(image, tile))[None])
        rgb = (np.clip(upscaled[0], 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        plan.place(out, rgb, tile, channels_last=True)

    async def upscale(self, path: Path) -> bytes:
        plan, image = await asyncio.to_thread(self._prepare, path)
        out = np.empty((plan.height * self.scale, plan.width * self.scale, 3), dtype=np.uint8)
        tiles = list(plan.tiles())
        for start in range(0, len(tiles), TILE_WINDOW):
            await asyncio.gather(*(self._tile(plan, image, out, t) for t in tiles[start : start + TILE_WINDOW]))
        self._predicted.inc()
        return await asyncio.to_thread(encode_png, out)

    async def superres(self, path: Path) -> Response:
        png = await self.upscale(path)
        return Response(png, media_type="image/png", headers={VERSION_HEADER: self.version})


class SuperresAPI:
    """Mixin holding the ``/superres`` endpoint."""

    runner_types = {"superres": SuperresRunner}
    routes = {"/superres": "superres"}

    @bentoml.api(route="/superres")
    async def superres(
        self,
        image: Annotated[Path, Field(description="an image: PNG, JPEG, GIF, BMP, TIFF, WebP, ...")],
        ctx: bentoml.Context,
    ) -> Image.Image:
        """Upscale one image (2x by default): the result as a PNG (``image/png``)."""
        return await self.serve("superres", ctx, lambda r: r.superres(image))  # type: ignore[attr-defined]


@with_middleware
@bentoml.service(name="superres", **service_options(compute_bound=True))
class Superres(SuperresAPI, ZooService):
    served = ("superres",)
    compute_bound = True
