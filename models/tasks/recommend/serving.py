"""Serving ``recommend``: the movies a user would rate highest (``recommend``), and ratings of pairs (``rate``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from models.inputs import InvalidInput
from models.serving import Endpoint, Limits, Prepared, Serving, check_index_range, per_item
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
    shadow_measure = "mad"
    canary_p99_ms = 250.0
    feedback = {"rate": "the rating the user gave each movie"}

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

    def agreement(self, endpoint: str, champion: Any, challenger: Any) -> float | None:
        """The mean absolute difference of the predicted ratings: of each pair (rate), or of the movies both
        recommend (recommend), else of the recommendations rank by rank."""
        if isinstance(champion, Ratings):
            a, b = [r.rating for r in champion.ratings], [r.rating for r in challenger.ratings]
        else:
            theirs = {m.movie_id: m.rating for m in challenger.movies}
            shared = [(m.rating, theirs[m.movie_id]) for m in champion.movies if m.movie_id in theirs]
            pairs = shared or list(zip([m.rating for m in champion.movies], [m.rating for m in challenger.movies]))
            a, b = [p[0] for p in pairs], [p[1] for p in pairs]
        return float(np.mean(np.abs(np.subtract(a, b)))) if len(a) and len(a) == len(b) else None

    def request_key(self, endpoint: str, request: dict[str, Any]) -> str | None:
        users = [request["user_id"]] if endpoint == "recommend" else request.get("user_ids") or []
        return f"user:{users[0]}" if users else None

    def outcome(self, endpoint: str, value: Any, request: dict[str, Any]) -> list[Any]:
        if endpoint != "rate":
            return super().outcome(endpoint, value, request)
        low, high = self.spec["y_range"]

        def check(rating: Any, i: int) -> float:
            if isinstance(rating, bool) or not isinstance(rating, (int, float)) or not low <= rating <= high:
                raise InvalidInput("bad_rating", f"outcome[{i}] = {rating!r} is not a rating from {low:g} to {high:g}")
            return float(rating)

        return per_item(value, len(request.get("user_ids") or []), check)


SERVING = RecommendServing
