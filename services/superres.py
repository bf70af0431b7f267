"""The ``superres`` API: an image in, the model's upscaling out as a PNG (``image/png``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import bentoml
from PIL import Image
from pydantic import Field
from starlette.responses import Response

from services.base import VERSION_HEADER, ZooService
from services.compose import single_task_service


class API(ZooService, task="superres"):
    @bentoml.api(route="/superres")
    async def superres(
        self,
        image: Annotated[Path, Field(description="an image: PNG, JPEG, GIF, BMP, TIFF, WebP, ...")],
        ctx: bentoml.Context,
    ) -> Image.Image:
        """Upscale one image (2x by default): the result as a PNG (``image/png``)."""
        answer: Any = await self.infer(ctx, "superres", image=image)
        if isinstance(answer, bytes):
            return Response(answer, media_type="image/png", headers={VERSION_HEADER: ctx.response.headers[VERSION_HEADER]})  # type: ignore[return-value]
        return answer


Service = single_task_service(API, compute_bound=True)
