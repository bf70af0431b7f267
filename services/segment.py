"""The ``segment`` API: a street photo in, its class-index mask (PNG), class shares and an optional overlay out."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Annotated

import bentoml
import numpy as np
from PIL import Image
from pydantic import BaseModel, Field

from models.images import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, decode_image
from models.tasks.segment import class_shares, overlay, png_bytes, predict_mask, preprocess
from services.base import TaskRunner, ZooService, env_int, service_options, with_middleware


class ClassShare(BaseModel):
    label: str
    index: int = Field(description="the class index: the mask's pixel value")
    share: float = Field(description="share of the image's pixels given this class")


class SegmentResult(BaseModel):
    model_version: str
    width: int
    height: int
    classes: list[str] = Field(description="class names; a mask pixel value v means classes[v]")
    shares: list[ClassShare] = Field(description="classes present in the mask, largest share first")
    mask_png: str = Field(description="base64 PNG, 8-bit greyscale, the input's size: one class index per pixel")
    overlay_png: str | None = Field(None, description="base64 PNG of the mask's colours over the photo (with overlay=true)")


class SegmentRunner(TaskRunner):
    task = "segment"

    def _prepare(self, path: Path) -> tuple[Image.Image, np.ndarray]:
        img = decode_image(path, env_int("ZOO_MAX_IMAGE_PIXELS", DEFAULT_MAX_PIXELS), env_int("ZOO_MAX_BODY_BYTES", DEFAULT_MAX_BYTES))
        return img, preprocess(img, self.spec)[None]

    def _answer(self, img: Image.Image, logits: np.ndarray, with_overlay: bool) -> SegmentResult:
        classes = list(self.spec["classes"])
        mask = predict_mask(logits, img.size)
        over = None
        if with_overlay:
            over = base64.b64encode(png_bytes(overlay(np.asarray(img, dtype=np.uint8), mask, len(classes)))).decode()
        return SegmentResult(
            model_version=self.version,
            width=img.width,
            height=img.height,
            classes=classes,
            shares=[ClassShare(**s) for s in class_shares(mask, classes)],
            mask_png=base64.b64encode(png_bytes(mask)).decode(),
            overlay_png=over,
        )

    async def segment(self, path: Path, with_overlay: bool) -> SegmentResult:
        img, x = await asyncio.to_thread(self._prepare, path)
        logits = await self.run(x)
        return await asyncio.to_thread(self._answer, img, logits[0], with_overlay)


class SegmentAPI:
    """Mixin holding the ``/segment`` endpoint."""

    runner_types = {"segment": SegmentRunner}
    routes = {"/segment": "segment"}

    @bentoml.api(route="/segment")
    async def segment(
        self,
        image: Annotated[Path, Field(description="a photo: PNG, JPEG, GIF, BMP, TIFF, WebP, ...")],
        ctx: bentoml.Context,
        overlay: Annotated[bool, Field(description="also return the mask's colours over the photo")] = False,
    ) -> SegmentResult:
        """Segment one photo: a class index per pixel (PNG, base64), the share of each class, optionally an overlay."""
        return await self.serve("segment", ctx, lambda r: r.segment(image, overlay))  # type: ignore[attr-defined]


@with_middleware
@bentoml.service(name="segment", **service_options(compute_bound=True))
class Segment(SegmentAPI, ZooService):
    served = ("segment",)
    compute_bound = True
