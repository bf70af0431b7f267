"""Serving ``recommend``: the movies a user would rate highest (``recommend``), and ratings of pairs (``rate``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from models.inputs import InvalidInput
from models.serving import Endpoint, Limits, Prepared, Serving, check_index_range
from models.task import Spec
from models.tasks.recommend import IdMaps


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


class RecommendServing(Serving):
    task = "recommend"
    unknown_fields = ("user_id", "movie_id")

    def __init__(self, spec: Spec, limits: Limits) -> None:
        super().__init__(spec, limits)
        self.maps = IdMaps(spec)
        self.rated = {int(u): set(ms) for u, ms in spec["rated"].items()}
        self.popular = [int(m) for m in spec["popular"]]

    def endpoints(self) -> dict[str, Endpoint]:
        cheap = lambda **request: True  # noqa: E731 - id lookups: cheaper than the hop to a thread
        return {
            "recommend": Endpoint(self.prepare_recommend, self.answer_recommend, cheap),
            "rate": Endpoint(self.prepare_rate, self.answer_rate, cheap),
        }

    def check_tensors(self, inputs: dict[str, np.ndarray]) -> None:
        check_index_range("user", inputs["user"], len(self.spec["users"]) + 1)
        check_index_range("movie", inputs["movie"], len(self.spec["movies"]) + 1)

    def examples(self, folder: Path) -> dict[str, dict[str, Any]]:
        user, movie = int(self.spec["users"][0]), int(self.spec["movies"][0])
        return {"recommend": {"user_id": user, "k": 3}, "rate": {"user_ids": [user, 10**9], "movie_ids": [movie, movie]}}

    def prepare_recommend(self, user_id: int, k: int = 10) -> Prepared:
        known = user_id in self.maps.users
        if known:
            seen = self.rated.get(user_id, set())
            candidates = np.asarray([m for m in self.maps.movie_ids if int(m) not in seen], dtype=np.int64)
        else:  # served from the unknown-user index 0: the most popular movies
            candidates = np.asarray(self.popular[:k], dtype=np.int64)
        inputs = [self.maps.encode(np.full(len(candidates), user_id, dtype=np.int64), candidates)] if len(candidates) else []
        return Prepared(inputs, context=(user_id, k, known, candidates), unknown=() if known else ("user_id",), items=len(candidates))

    def answer_recommend(self, prepared: Prepared, outputs: list[np.ndarray], version: str) -> Recommendations:
        user_id, k, known, candidates = prepared.context
        picks: list[MovieScore] = []
        if outputs:
            scores = outputs[0]
            order = np.argsort(-scores, kind="stable")[:k] if known else np.arange(len(candidates))
            picks = [MovieScore(movie_id=int(candidates[i]), rating=float(scores[i])) for i in order]
        return Recommendations(model_version=version, user_id=user_id, known_user=known, popular=not known, movies=picks)

    def prepare_rate(self, user_ids: list[int], movie_ids: list[int]) -> Prepared:
        if len(user_ids) != len(movie_ids):
            raise InvalidInput("length_mismatch", f"user_ids has {len(user_ids)} ids but movie_ids has {len(movie_ids)}; they pair up one to one")
        if not user_ids:
            raise InvalidInput("empty", "user_ids and movie_ids are empty; send at least one pair")
        if len(user_ids) > self.limits.max_pairs:
            raise InvalidInput("too_many", f"{len(user_ids)} pairs; the limit is {self.limits.max_pairs} per request", status=413)
        u_raw, m_raw = np.asarray(user_ids, dtype=np.int64), np.asarray(movie_ids, dtype=np.int64)
        users, movies = self.maps.encode(u_raw, m_raw)
        # index 0: an id the model has not seen, rated as the average user/movie
        unknown = (*(("user_id",) if not users.all() else ()), *(("movie_id",) if not movies.all() else ()))
        return Prepared([(users, movies)], context=(u_raw, m_raw), unknown=unknown)

    def answer_rate(self, prepared: Prepared, outputs: list[np.ndarray], version: str) -> Ratings:
        (users, movies), (u_raw, m_raw) = prepared.inputs[0], prepared.context
        return Ratings(
            model_version=version,
            ratings=[
                PairRating(user_id=int(u), movie_id=int(m), rating=float(s), known_user=bool(ui), known_movie=bool(mi))
                for u, m, s, ui, mi in zip(u_raw, m_raw, outputs[0], users, movies)
            ],
        )


SERVING = RecommendServing
