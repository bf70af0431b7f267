"""The ``recommend`` and ``rate`` APIs: MovieLens collaborative filtering."""

from __future__ import annotations

from typing import Annotated

import bentoml
import numpy as np
from pydantic import BaseModel, Field

from models.inputs import InvalidInput
from models.onnx_model import OnnxModel
from models.tasks.recommend import IdMaps
from services.base import TaskRunner, ZooService, env_int, service_options, with_middleware
from services.metrics import zoo_metrics


MAX_ID = 2**63 - 1
Id = Annotated[int, Field(strict=True, ge=0, le=MAX_ID)]
"""A MovieLens id: a non-negative integer that fits the model's int64 inputs."""


class MovieScore(BaseModel):
    movie_id: int
    rating: float


class Recommendations(BaseModel):
    model_version: str
    user_id: int
    known_user: bool
    popular: bool = Field(description="true when the user is unknown and these are the most popular movies")
    movies: list[MovieScore]


class PairRating(BaseModel):
    user_id: int
    movie_id: int
    rating: float
    known_user: bool
    known_movie: bool


class Ratings(BaseModel):
    model_version: str
    ratings: list[PairRating]


class RecommendRunner(TaskRunner):
    task = "recommend"

    def __init__(self, model: OnnxModel) -> None:
        super().__init__(model)
        self.maps = IdMaps(self.spec)
        self.rated = {int(u): set(ms) for u, ms in self.spec["rated"].items()}
        self.popular = [int(m) for m in self.spec["popular"]]
        for field in ("user_id", "movie_id"):  # exported at 0 from the start
            zoo_metrics().unknown_inputs.labels(self.task, field)

    async def recommend(self, user_id: int, k: int) -> Recommendations:
        known = user_id in self.maps.users
        if not known:  # served from the unknown-user index 0: the most popular movies
            zoo_metrics().unknown_inputs.labels(self.task, "user_id").inc()
        if known:
            seen = self.rated.get(user_id, set())
            candidates = np.asarray([m for m in self.maps.movie_ids if int(m) not in seen], dtype=np.int64)
        else:
            candidates = np.asarray(self.popular[:k], dtype=np.int64)
        if len(candidates) == 0:
            return Recommendations(model_version=self.version, user_id=user_id, known_user=known, popular=not known, movies=[])
        users, movies = self.maps.encode(np.full(len(candidates), user_id, dtype=np.int64), candidates)
        scores = await self.run(users, movies)
        order = np.argsort(-scores, kind="stable")[:k] if known else np.arange(len(candidates))
        picks = [MovieScore(movie_id=int(candidates[i]), rating=float(scores[i])) for i in order]
        return Recommendations(model_version=self.version, user_id=user_id, known_user=known, popular=not known, movies=picks)

    async def rate(self, user_ids: list[int], movie_ids: list[int]) -> Ratings:
        limit = env_int("ZOO_MAX_PAIRS", 10_000)
        if len(user_ids) != len(movie_ids):
            raise InvalidInput("length_mismatch", f"user_ids has {len(user_ids)} ids but movie_ids has {len(movie_ids)}; they pair up one to one")
        if not user_ids:
            raise InvalidInput("empty", "user_ids and movie_ids are empty; send at least one pair")
        if len(user_ids) > limit:
            raise InvalidInput("too_many", f"{len(user_ids)} pairs; the limit is {limit} per request", status=413)
        u_raw, m_raw = np.asarray(user_ids, dtype=np.int64), np.asarray(movie_ids, dtype=np.int64)
        users, movies = self.maps.encode(u_raw, m_raw)
        unknown = zoo_metrics().unknown_inputs
        if not users.all():  # index 0: an id the model has not seen, rated as the average user/movie
            unknown.labels(self.task, "user_id").inc()
        if not movies.all():
            unknown.labels(self.task, "movie_id").inc()
        scores = await self.run(users, movies)
        return Ratings(
            model_version=self.version,
            ratings=[
                PairRating(user_id=int(u), movie_id=int(m), rating=float(s), known_user=bool(ui), known_movie=bool(mi))
                for u, m, s, ui, mi in zip(u_raw, m_raw, scores, users, movies)
            ],
        )


class RecommendAPI:
    """Mixin holding the ``/recommend`` and ``/rate`` endpoints."""

    runner_types = {"recommend": RecommendRunner}
    routes = {"/recommend": "recommend", "/rate": "recommend"}

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
        return await self.serve("recommend", ctx, lambda r: r.recommend(user_id, k))  # type: ignore[attr-defined]

    @bentoml.api(route="/rate")
    async def rate(
        self,
        user_ids: Annotated[list[Id], Field(description="user ids, paired with movie_ids")],
        movie_ids: Annotated[list[Id], Field(description="movie ids, same length as user_ids")],
        ctx: bentoml.Context,
    ) -> Ratings:
        """Predicted ratings for (user, movie) pairs; unknown ids are flagged."""
        return await self.serve("recommend", ctx, lambda r: r.rate(user_ids, movie_ids))  # type: ignore[attr-defined]


@with_middleware
@bentoml.service(name="recommend", **service_options())
class Recommend(RecommendAPI, ZooService):
    served = ("recommend",)
