"""The ``classify`` API: an image in, the top-k classes with probabilities out."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import bentoml
from pydantic import Field

from models.tasks.classify.serving import ClassifyResult
from services.base import ZooService
from services.compose import single_task_service


class API(ZooService, task="classify"):
    @bentoml.api(route="/classify")
    async def classify(
        self,
        image: Annotated[Path, Field(description="an image file: PNG, JPEG, GIF, BMP, TIFF, WebP, ...")],
        ctx: bentoml.Context,
        k: Annotated[int, Field(ge=1, le=100, description="how many classes to return")] = 5,
        explain: Annotated[bool, Field(description="also return heatmap_png, where the model looked for its top class")] = False,
    ) -> ClassifyResult:
        """Classify one image (PNG, JPEG, ...): the ``k`` most probable classes, and with ``explain`` their heatmap."""
        return await self.infer(ctx, "classify", image=image, k=k, explain=explain)


Service = single_task_service(API)
