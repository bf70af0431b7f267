"""``recommend``: collaborative filtering with the course's EmbeddingDotBias (lesson 8).

Sample data: ``movie_lens_sample/ratings.csv`` (userId,movieId,rating,timestamp).
Real data: MovieLens 100k's tab-separated ``u.data`` (user, item, rating, timestamp).
Index 0 of each embedding is reserved for ids never seen in training: it is
not trained, and after training it is set to the average of the known rows,
so an unknown user is scored as the average user.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from models.task import Dataset, PromotionPolicy, Spec, Task, TensorSpec, TrainConfig

if TYPE_CHECKING:
    from models.training.recipe import Recipe


@dataclass(frozen=True)
class RecommendConfig(TrainConfig):
    dataset: str = "movie_lens_sample"
    n_factors: int = 50
    y_low: float = 0.0
    y_high: float = 5.5
    valid_pct: float = 0.2
    n_popular: int = 100


def read_ratings(root: Path) -> pd.DataFrame:
    """Ratings as ``user, movie, rating`` from ``ratings.csv`` or MovieLens 100k's ``u.data``."""
    df = read_raw_ratings(root)
    return df[["user", "movie", "rating"]].astype({"user": "int64", "movie": "int64", "rating": "float32"})


def read_raw_ratings(root: Path) -> pd.DataFrame:
    """The ratings file as read, columns renamed to ``user, movie, rating`` but not converted."""
    if (root / "ratings.csv").is_file():
        df = pd.read_csv(root / "ratings.csv")
        df = df.rename(columns={"userId": "user", "movieId": "movie"})
    elif (root / "u.data").is_file():
        df = pd.read_csv(root / "u.data", sep="\t", names=["user", "movie", "rating", "timestamp"])
    else:
        raise FileNotFoundError(f"{root}: neither ratings.csv nor u.data")
    missing = {"user", "movie", "rating"} - set(df.columns)
    if missing:
        raise ValueError(f"{root}: ratings lack columns {sorted(missing)}")
    return df


def ratings_schema(min_rows: int = 100, max_rows: int = 100_000_000):
    """The declared schema of a ratings table (pandera)."""
    import pandera.pandas as pa

    ids = [pa.Check.ge(0)]
    return pa.DataFrameSchema(
        {
            "user": pa.Column("int64", ids, nullable=False, coerce=True),
            "movie": pa.Column("int64", ids, nullable=False, coerce=True),
            "rating": pa.Column("float64", pa.Check.in_range(0.5, 5.0), nullable=False, coerce=True),
        },
        checks=[
            pa.Check(lambda df: min_rows <= len(df) <= max_rows, error=f"row count outside [{min_rows}, {max_rows}]"),
            pa.Check(lambda df: df["user"].nunique() >= 2 and df["movie"].nunique() >= 2, error="fewer than 2 users or movies"),
        ],
        strict=True,
    )


def popular_and_rated(train: pd.DataFrame, df: pd.DataFrame, n_popular: int) -> tuple[list[int], dict[str, list[int]]]:
    """The ``n_popular`` most rated movies of ``train``, and every user's rated movies in ``df`` (the spec's
    ``popular`` and ``rated``: what ``/recommend`` serves to unknown users and leaves out for known ones)."""
    counts = train["movie"].value_counts(sort=False)
    popular = counts.sort_values(ascending=False, kind="stable").index[:n_popular]
    return [int(m) for m in popular], {str(u): sorted(int(m) for m in g) for u, g in df.groupby("user")["movie"]}


class IdMaps:
    """Raw user and movie ids -> embedding indices (0 = unknown). Training and serving share it."""

    def __init__(self, spec: Spec) -> None:
        self.users = {int(u): i + 1 for i, u in enumerate(spec["users"])}
        self.movies = {int(m): i + 1 for i, m in enumerate(spec["movies"])}
        self.movie_ids = np.asarray(spec["movies"], dtype=np.int64)

    def encode(self, users: np.ndarray, movies: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Vectors of raw ids -> int64 index vectors."""
        u = np.fromiter((self.users.get(int(x), 0) for x in users), dtype=np.int64, count=len(users))
        m = np.fromiter((self.movies.get(int(x), 0) for x in movies), dtype=np.int64, count=len(movies))
        return u, m


class Recommend(Task):
    name = "recommend"
    datasets = ("movie_lens_sample",)
    metric_name = "mse"
    higher_is_better = False
    config_class = RecommendConfig
    promotion = PromotionPolicy(tolerance=0.01, latency_budget_ms=10.0)
    configs = {
        "demo": {"epochs": 5, "batch_size": 64, "lr": 5e-3, "weight_decay": 0.1},
        "tiny": {"epochs": 1, "batch_size": 64, "lr": 5e-3, "limit": 512, "n_factors": 8},
    }

    def validate(self, data_dir: Path, config: TrainConfig) -> list[str]:
        """Types, id and rating ranges, no nulls, row-count bounds (see :func:`ratings_schema`)."""
        import pandera.pandas as pa

        assert isinstance(config, RecommendConfig)
        root = data_dir / config.dataset
        try:
            df = read_raw_ratings(root)[["user", "movie", "rating"]]
        except (FileNotFoundError, ValueError, KeyError) as exc:
            return [str(exc)]
        try:
            ratings_schema().validate(df, lazy=True)
        except pa.errors.SchemaErrors as exc:
            cases = exc.failure_cases
            return [
                f"{row.column if isinstance(row.column, str) else 'table'}: {row.check} failed"
                + (f" (e.g. {row.failure_case!r})" if row.failure_case is not None else "")
                for row in cases.drop_duplicates(["column", "check"]).itertuples()
            ]
        return []

    def absorb(self, data_dir: Path, labelled: list[tuple[Any, list[Any]]]) -> int:
        """Each rated pair of a captured ``/rate`` request becomes a row of ``ratings.csv``, timed at its feedback."""
        import csv
        import time

        path = data_dir / self.datasets[0] / "ratings.csv"
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: captured ratings are added to the MovieLens sample's ratings.csv")
        rows = [
            (int(u), int(m), float(r), int(time.time()))
            for captured, outcomes in labelled
            if captured.record.get("endpoint") == "rate"
            for u, m, r in zip(captured.record["request"]["user_ids"], captured.record["request"]["movie_ids"], outcomes)
        ]
        with path.open("a", newline="") as out:
            csv.writer(out).writerows(rows)
        return len(rows)

    def load(self, data_dir: Path, config: TrainConfig) -> Dataset:
        assert isinstance(config, RecommendConfig)
        df = read_ratings(data_dir / config.dataset)
        rng = np.random.default_rng(config.seed)
        is_valid = rng.random(len(df)) < config.valid_pct
        train, valid = df[~is_valid], df[is_valid]
        if config.limit:
            train, valid = train.iloc[: config.limit], valid.iloc[: config.limit]
        popular, rated = popular_and_rated(train, df, config.n_popular)
        spec: Spec = {
            "users": sorted(int(u) for u in train["user"].unique()),
            "movies": sorted(int(m) for m in train["movie"].unique()),
            "y_range": [config.y_low, config.y_high],
            "global_mean": float(train["rating"].mean()),
            "popular": popular,
            "rated": rated,
        }
        maps = IdMaps(spec)
        tx = maps.encode(train["user"].to_numpy(), train["movie"].to_numpy())
        vx = maps.encode(valid["user"].to_numpy(), valid["movie"].to_numpy())
        extras = {"train": train.reset_index(drop=True), "valid": valid.reset_index(drop=True)}
        return Dataset(tx, train["rating"].to_numpy(), vx, valid["rating"].to_numpy(), spec, extras)

    def recipe(self, config: TrainConfig) -> "Recipe":
        from models.tasks.recommend.recipe import RecommendRecipe

        return RecommendRecipe(self, config)

    def metric(self, output: np.ndarray, target: np.ndarray) -> float:
        return float(np.mean((output.astype(np.float64) - target) ** 2))

    def baseline(self, data: Dataset) -> float:
        """Global mean plus damped user and movie biases, fitted on the training split."""
        train, valid = data.extras["train"], data.extras["valid"]
        mu = float(train["rating"].mean())
        dev = train["rating"] - mu
        b_movie = dev.groupby(train["movie"]).sum() / (train.groupby("movie").size() + 10.0)
        resid = dev - train["movie"].map(b_movie)
        b_user = resid.groupby(train["user"]).sum() / (train.groupby("user").size() + 10.0)
        pred = mu + valid["movie"].map(b_movie).fillna(0.0) + valid["user"].map(b_user).fillna(0.0)
        pred = pred.clip(*data.spec["y_range"])
        return float(np.mean((pred.to_numpy() - valid["rating"].to_numpy()) ** 2))

    def inputs(self, spec: Spec) -> list[TensorSpec]:
        return [TensorSpec("user", "int64", ("batch",)), TensorSpec("movie", "int64", ("batch",))]

    def outputs(self, spec: Spec) -> list[TensorSpec]:
        return [TensorSpec("rating", "float32", ("batch",))]

    def figures(self, data: Dataset, output: np.ndarray) -> dict[str, object]:
        from models.plots import predicted_vs_actual

        return {"predicted_vs_actual.png": predicted_vs_actual(data.valid_y, output)}


TASK = Recommend()
