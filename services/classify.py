"""The ``classify`` API: an image in, the top-k classes with probabilities out."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import bentoml
import numpy as np
from pydantic import BaseModel, Field

from models.images import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, decode_image
from models.tasks.classify import preprocess, top_k
from services.base import TaskRunner, ZooService, env_int, service_options, with_middleware


class Prediction(BaseModel):
    label: str
    probability: float


class ClassifyResult(BaseModel):
    model_version: str
    predictions: list[Prediction]


class ClassifyRunner(TaskRunner):
    task = "classify"

    def _prepare(self, path: Path) -> np.ndarray:
        img = decode_image(path, env_int("ZOO_MAX_IMAGE_PIXELS", DEFAULT_MAX_PIXELS), env_int("ZOO_MAX_BODY_BYTES", DEFAULT_MAX_BYTES))
        return preprocess(img, self.spec)[None]

    async def classify(self, path: Path, k: int) -> ClassifyResult:
        x = await asyncio.to_thread(self._prepare, path)
        logits = await self.run(x)
        return ClassifyResult(model_version=self.version, predictions=[Prediction(**p) for p in top_k(logits[0], self.spec, k)])


class ClassifyAPI:
    """Mixin holding the ``/classify`` endpoint."""

    runner_types = {"classify": ClassifyRunner}
    routes = {"/classify": "classify"}

    @bentoml.api(route="/classify")
    async def classify(
        self,
        image: Annotated[Path, Field(description="an image file: PNG, JPEG, GIF, BMP, TIFF, WebP, ...")],
        ctx: bentoml.Context,
        k: Annotated[int, Field(ge=1, le=100, description="how many classes to return")] = 5,
    ) -> ClassifyResult:
        """Classify one image (PNG, JPEG, ...): the ``k`` most probable classes."""
        return await self.serve("classify", ctx, lambda r: r.classify(image, k))  # type: ignore[attr-defined]


@with_middleware
@bentoml.service(name="classify", **service_options())
class Classify(ClassifyAPI, ZooService):
    served = ("classify",)
