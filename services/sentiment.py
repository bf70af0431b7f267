"""The ``sentiment`` API: a list of texts in, a label and its probability per text out."""

from __future__ import annotations

from typing import Annotated

import bentoml
from pydantic import Field

from models.tasks.sentiment.serving import SentimentResult
from services.base import ZooService
from services.compose import single_task_service


class API(ZooService, task="sentiment"):
    @bentoml.api(route="/sentiment")
    async def sentiment(
        self,
        texts: Annotated[list[str], Field(min_length=1, description="texts to classify (movie reviews), at least one, at most ZOO_MAX_TEXTS (default 64)")],
        ctx: bentoml.Context,
    ) -> SentimentResult:
        """The sentiment of each text: its label and probability; long texts are cut to their last tokens and flagged."""
        return await self.infer(ctx, "sentiment", texts=texts)


Service = single_task_service(API)
