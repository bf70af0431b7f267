"""The ``segment`` API: a street photo in, its class-index mask (PNG), class shares and an optional overlay out."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import bentoml
from pydantic import Field

from models.tasks.segment.serving import SegmentResult
from services.base import ZooService
from services.compose import single_task_service


class API(ZooService, task="segment"):
    @bentoml.api(route="/segment")
    async def segment(
        self,
        image: Annotated[Path, Field(description="a photo: PNG, JPEG, GIF, BMP, TIFF, WebP, ...")],
        ctx: bentoml.Context,
        overlay: Annotated[bool, Field(description="also return the mask's colours over the photo")] = False,
    ) -> SegmentResult:
        """Segment one photo: a class index per pixel (PNG, base64), the share of each class, optionally an overlay."""
        return await self.infer(ctx, "segment", image=image, overlay=overlay)


Service = single_task_service(API, compute_bound=True)
