"""``sales``: Rossmann store sales with entity embeddings (the course's tabular lesson).

Sample data: ``rossmann_sample/{train.csv,store.csv}`` in Kaggle's schema, generated
by ``zoo data ingest`` from a seed (synthetic: :mod:`models.tasks.sales.synthetic`).
Real data: Kaggle's ``train.csv`` and ``store.csv``; with ``ZOO_SALES_DATA`` set to
the folder holding them, ingest copies them instead of generating the sample.

The parts: :mod:`~models.tasks.sales.schema` (the tables and their checks),
:mod:`~models.tasks.sales.calendar` and :mod:`~models.tasks.sales.features`
(the course's features, shared with the service), :mod:`~models.tasks.sales.recipe`
(the network), :mod:`~models.tasks.sales.serving` (the ``/sales`` API's hooks).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from models.settings import Settings
from models.task import Dataset, PromotionPolicy, Spec, Task, TensorSpec, TrainConfig
from models.tasks.sales.features import Preprocessor, fit_spec
from models.tasks.sales.schema import TRAIN_COLUMNS, problems_of, read_tables, store_schema, train_schema
from models.tasks.sales.synthetic import write_rossmann

if TYPE_CHECKING:
    from models.training.recipe import Recipe

DATASET = "rossmann_sample"


@dataclass(frozen=True)
class SalesConfig(TrainConfig):
    dataset: str = DATASET
    layers: tuple[int, ...] = (1000, 500)
    dropout: tuple[float, ...] = (0.001, 0.01)
    emb_dropout: float = 0.04
    valid_weeks: int = 6
    """The last this many weeks of the data are the validation split."""
    elapsed_cap: int = 60
    """Days since/until an event are capped here."""
    y_margin: float = 1.2
    """The sigmoid's range tops out at log(this x the largest training sales)."""


def fitted_split(data_dir: Path, config: SalesConfig) -> tuple[Spec, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The open days with sales, split as the task splits them (the last ``valid_weeks`` validate), and the spec
    fitted on the training rows (calendars from every row), with those rows' raw features."""
    train_raw, store = read_tables(data_dir / config.dataset)
    rows = prepare_rows(train_raw)
    valid_start = rows["Date"].max() - pd.Timedelta(days=7 * config.valid_weeks - 1)
    useful = rows[(rows["Open"] == 1) & (rows["Sales"] > 0)]
    train = useful[useful["Date"] < valid_start]
    valid = useful[useful["Date"] >= valid_start]
    if train.empty or valid.empty:
        raise ValueError(f"{data_dir / config.dataset}: empty training or validation split (validation from {valid_start.date()})")
    spec, raw_train = fit_spec(rows, store, train, config.elapsed_cap)
    spec["valid_start"] = str(valid_start.date())
    spec["data_end"] = str(rows["Date"].max().date())
    return spec, train, valid, raw_train


def rmspe(predicted: np.ndarray, actual: np.ndarray) -> float:
    """Root mean square percentage error (Kaggle's Rossmann metric) over rows with actual sales."""
    actual = np.asarray(actual, dtype=np.float64)
    predicted = np.asarray(predicted, dtype=np.float64)
    keep = actual > 0
    if not np.any(keep):
        return float("nan")
    return float(np.sqrt(np.mean(((actual[keep] - predicted[keep]) / actual[keep]) ** 2)))


def prepare_rows(train: pd.DataFrame) -> pd.DataFrame:
    """``train.csv`` as typed columns, sorted by date then store."""
    df = train[TRAIN_COLUMNS].copy()
    df["Date"] = pd.to_datetime(df["Date"])
    df["StateHoliday"] = df["StateHoliday"].astype(str)
    for c in ("Store", "DayOfWeek", "Sales", "Open", "Promo", "SchoolHoliday"):
        df[c] = df[c].astype(np.int64)
    df["Customers"] = df["Customers"].astype("Int64")  # empty where captured traffic added the day
    return df.sort_values(["Date", "Store"], kind="stable").reset_index(drop=True)


class Sales(Task):
    name = "sales"
    datasets = (DATASET,)
    metric_name = "rmspe"
    higher_is_better = False
    config_class = SalesConfig
    promotion = PromotionPolicy(tolerance=0.005, latency_budget_ms=10.0)
    configs = {
        "demo": {"epochs": 12, "batch_size": 512, "lr": 5e-3, "weight_decay": 0.2},
        "tiny": {"epochs": 1, "batch_size": 64, "lr": 3e-3, "limit": 512, "layers": (32, 16)},
    }

    def generate(self, name: str, target: Path) -> bool:
        """Write ``rossmann_sample``: the synthetic sample, or Kaggle's files from ``ZOO_SALES_DATA``."""
        if name != DATASET:
            return False
        folder = Settings.from_env().sales_data
        if folder is not None:
            target.mkdir(parents=True, exist_ok=True)
            for file in ("train.csv", "store.csv"):
                if not (folder / file).is_file():
                    raise FileNotFoundError(f"ZOO_SALES_DATA={folder} has no {file}")
                shutil.copyfile(folder / file, target / file)
            return True
        write_rossmann(target)
        return True

    def validate(self, data_dir: Path, config: TrainConfig) -> list[str]:
        """Both tables against their pandera schemas; every store in train.csv is in store.csv; enough history."""
        import pandera.pandas as pa

        assert isinstance(config, SalesConfig)
        try:
            train, store = read_tables(data_dir / config.dataset)
        except (FileNotFoundError, ValueError) as exc:
            return [str(exc)]
        problems: list[str] = []
        for df, schema, file in ((train, train_schema(), "train.csv"), (store, store_schema(), "store.csv")):
            try:
                schema.validate(df, lazy=True)
            except pa.errors.SchemaErrors as exc:
                problems.extend(problems_of(exc, file))
        if problems:
            return problems
        missing = sorted(set(train["Store"].astype(int)) - set(store["Store"].astype(int)))
        if missing:
            problems.append(f"train.csv: stores not in store.csv, e.g. {missing[:5]}")
        dates = pd.to_datetime(train["Date"])
        days = (dates.max() - dates.min()).days + 1
        if days <= 7 * config.valid_weeks:
            problems.append(f"train.csv spans {days} days; more than the {config.valid_weeks} validation weeks are needed")
        open_rows = train[(train["Open"] == 1) & (train["Sales"] > 0)]
        if open_rows.empty:
            problems.append("train.csv has no open day with sales")
        return problems

    def absorb(self, data_dir: Path, labelled: list[tuple[Any, list[Any]]]) -> int:
        """Each record of a captured ``/sales`` request becomes a row of ``train.csv`` with its true sales (``Customers``
        left empty: feedback does not carry it, and the model does not read it). A store-day already in the data, or
        a store not in ``store.csv``, is left out: the data's own rows win."""
        import csv
        from datetime import date

        root = data_dir / DATASET
        train, store = read_tables(root)
        seen = set(zip(train["Store"].astype(int), train["Date"].astype(str)))
        stores = set(store["Store"].astype(int))
        rows = []
        for captured, outcomes in labelled:
            for record, sales in zip(captured.record["request"]["records"], outcomes):
                key = (int(record["Store"]), str(record["Date"]))
                if key in seen or key[0] not in stores:
                    continue
                seen.add(key)
                weekday = date.fromisoformat(key[1]).isoweekday()
                rows.append([key[0], weekday, key[1], round(float(sales)), "", record["Open"], record["Promo"], record["StateHoliday"], record["SchoolHoliday"]])
        with (root / "train.csv").open("a", newline="") as out:
            csv.writer(out).writerows(rows)
        return len(rows)

    def load(self, data_dir: Path, config: TrainConfig) -> Dataset:
        assert isinstance(config, SalesConfig)
        # The spec (vocabularies, statistics) is fitted on the whole training split; ``limit`` only trims the examples.
        spec, train, valid, raw_train = fitted_split(data_dir, config)
        n = min(len(train), config.limit or len(train))
        n -= int(n % config.batch_size == 1)  # a last batch of one row cannot go through batch norm in training mode
        train, raw_train = train.iloc[len(train) - n :], raw_train.iloc[len(raw_train) - n :]
        if config.limit:
            valid = valid.iloc[: config.limit]
        spec["y_range"] = [0.0, float(np.log(train["Sales"].max() * config.y_margin))]
        spec["y_mean"] = float(np.log(train["Sales"].to_numpy(dtype=np.float64)).mean())
        prep = Preprocessor(spec)
        tf = prep.encode(raw_train)
        vf = prep.transform(valid)
        keep = ["Store", "Date", "DayOfWeek", "Promo", "Sales"]
        extras = {"train": train[keep].reset_index(drop=True), "valid": valid[keep].reset_index(drop=True)}
        ty = np.log(train["Sales"].to_numpy(dtype=np.float64)).astype(np.float32)
        vy = np.log(valid["Sales"].to_numpy(dtype=np.float64)).astype(np.float32)
        return Dataset((tf.cats, tf.conts), ty, (vf.cats, vf.conts), vy, spec, extras)

    def recipe(self, config: TrainConfig) -> "Recipe":
        from models.tasks.sales.recipe import SalesRecipe

        return SalesRecipe(self, config)

    def metric(self, output: np.ndarray, target: np.ndarray) -> float:
        """RMSPE of the predicted sales on open days (outputs and targets are log sales)."""
        return rmspe(np.exp(np.asarray(output, dtype=np.float64)), np.exp(np.asarray(target, dtype=np.float64)))

    def baseline(self, data: Dataset) -> float:
        """The median sales of the same store and day of week in the training split (store, then overall median when unseen)."""
        train, valid = data.extras["train"], data.extras["valid"]
        by_store_dow = train.groupby(["Store", "DayOfWeek"])["Sales"].median()
        by_store = train.groupby("Store")["Sales"].median()
        keys = pd.MultiIndex.from_arrays([valid["Store"], valid["DayOfWeek"]])
        pred = pd.Series(by_store_dow.reindex(keys).to_numpy(), index=valid.index)
        pred = pred.fillna(valid["Store"].map(by_store)).fillna(float(train["Sales"].median()))
        return rmspe(pred.to_numpy(), valid["Sales"].to_numpy())

    def inputs(self, spec: Spec) -> list[TensorSpec]:
        return [
            TensorSpec("cats", "int64", ("batch", len(spec["cat_names"]))),
            TensorSpec("conts", "float32", ("batch", len(spec["cont_names"]))),
        ]

    def outputs(self, spec: Spec) -> list[TensorSpec]:
        return [TensorSpec("log_sales", "float32", ("batch",))]

    def figures(self, data: Dataset, output: np.ndarray) -> dict[str, object]:
        return {"predicted_vs_actual.png": sales_figure(data.extras["valid"], np.exp(output.astype(np.float64)))}


def sales_figure(valid: pd.DataFrame, predicted: np.ndarray, n_stores: int = 4) -> Any:
    """Predicted and actual daily sales of a few stores over the validation weeks."""
    from matplotlib.figure import Figure

    stores = sorted(valid["Store"].unique())[:n_stores]
    fig = Figure(figsize=(10, 2.4 * max(len(stores), 1)))
    axes = np.atleast_1d(fig.subplots(max(len(stores), 1), 1, sharex=True))
    for ax, s in zip(axes, stores):
        rows = (valid["Store"] == s).to_numpy()
        ax.plot(valid["Date"][rows], valid["Sales"][rows], marker="o", ms=3, label="actual")
        ax.plot(valid["Date"][rows], predicted[rows], marker="x", ms=3, label="predicted")
        promo = rows & (valid["Promo"] == 1).to_numpy()
        ax.scatter(valid["Date"][promo], valid["Sales"][promo], s=40, facecolors="none", edgecolors="C2", label="promo day")
        ax.set_ylabel(f"store {s}")
    axes[0].legend(loc="upper right", fontsize=8)
    axes[0].set_title("Sales over the validation weeks: predicted vs actual (open days)")
    fig.autofmt_xdate()
    fig.tight_layout()
    return fig


TASK = Sales()
