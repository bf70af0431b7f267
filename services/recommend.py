"""The ``recommend`` and ``rate`` APIs: MovieLens collaborative filtering."""

from __future__ import annotations

from typing import Annotated

import bentoml
from pydantic import Field

from models.tasks.recommend.serving import Ratings, Recommendations
from services.base import ZooService
from services.compose import single_task_service

MAX_ID = 2**63 - 1
Id = Annotated[int, Field(strict=True, ge=0, le=MAX_ID)]
"""A MovieLens id: a non-negative integer that fits the model's int64 inputs."""


class API(ZooService, task="recommend"):
    @bentoml.api(route="/recommend")
    async def recommend(
        self,
        user_id: Annotated[int, Field(strict=True, ge=0, le=MAX_ID, description="MovieLens user id")],
        ctx: bentoml.Context,
        k: Annotated[int, Field(strict=True, ge=1, le=100, description="how many movies")] = 10,
    ) -> Recommendations:
        """The ``k`` movies this user has not rated with the highest predicted rating.

        An unknown user gets the most popular movies, with ``popular: true``.
        """
        return await self.infer(ctx, "recommend", user_id=user_id, k=k)

    @bentoml.api(route="/rate")
    async def rate(
        self,
        user_ids: Annotated[list[Id], Field(min_length=1, description="user ids, paired with movie_ids; at most ZOO_MAX_PAIRS (default 10,000)")],
        movie_ids: Annotated[list[Id], Field(min_length=1, description="movie ids, same length as user_ids")],
        ctx: bentoml.Context,
    ) -> Ratings:
        """Predicted ratings for (user, movie) pairs; unknown ids are flagged."""
        return await self.infer(ctx, "rate", user_ids=user_ids, movie_ids=movie_ids)


Service = single_task_service(API)
