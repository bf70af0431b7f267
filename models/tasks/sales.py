"""``sales``: Rossmann store sales with entity embeddings (the course's tabular lesson).

Sample data: ``rossmann_sample/{train.csv,store.csv}`` in Kaggle's schema, generated
by ``zoo data ingest`` from a seed (synthetic: see :func:`generate_rossmann`).
Real data: Kaggle's ``train.csv`` and ``store.csv``; with ``ZOO_SALES_DATA`` set to
the folder holding them, ingest copies them instead of generating the sample.

The features are the course's: date parts, days since and until the last and
next state holiday, school holiday and promo (per store), the store table
joined, categorical columns embedded (index 0 = unknown), continuous columns
normalised with missing-value flags. :class:`Preprocessor` is the one
implementation of them; training and the ``/sales`` service both call it. Its
spec carries the store table and the holiday and promo calendars, so a record
shaped like Kaggle's ``test.csv`` is enough to predict.
"""

from __future__ import annotations

import math
import os
import shutil
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from collections.abc import Mapping
from typing import Any, Union

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F

from models.task import Dataset, PromotionPolicy, Spec, Task, TensorSpec, TrainConfig

DATASET = "rossmann_sample"
DATA_ENV = "ZOO_SALES_DATA"
"""A folder with Kaggle's ``train.csv`` and ``store.csv``: ingest copies them instead of generating the sample."""

TRAIN_COLUMNS = ["Store", "DayOfWeek", "Date", "Sales", "Customers", "Open", "Promo", "StateHoliday", "SchoolHoliday"]
STORE_COLUMNS = [
    "Store",
    "StoreType",
    "Assortment",
    "CompetitionDistance",
    "CompetitionOpenSinceMonth",
    "CompetitionOpenSinceYear",
    "Promo2",
    "Promo2SinceWeek",
    "Promo2SinceYear",
    "PromoInterval",
]
PROMO_INTERVALS = ("Jan,Apr,Jul,Oct", "Feb,May,Aug,Nov", "Mar,Jun,Sept,Dec")
MONTH_ABBR = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sept", "Oct", "Nov", "Dec")
STATE_HOLIDAYS = ("0", "a", "b", "c")
EVENTS = ("StateHoliday", "SchoolHoliday", "Promo")
"""Per-store events whose days since and until are features (the course's elapsed columns)."""

NA = "#na#"
"""The category key of a missing value (a known category when training saw it)."""
Records = Union[pd.DataFrame, Mapping[str, Any]]
"""Store-day records: a DataFrame or a mapping of column name -> values (one per record)."""

# Categorical features, each with the request field an unknown value is blamed on.
DATE_CATS = ["DayOfWeek", "Year", "Month", "Week", "Day"]
FLAG_CATS = ["Is_month_end", "Is_month_start", "Is_quarter_end", "Is_quarter_start", "Is_year_end", "Is_year_start"]
STORE_CATS = [
    "StoreType",
    "Assortment",
    "PromoInterval",
    "CompetitionOpenSinceYear",
    "Promo2SinceYear",
    "CompetitionMonthsOpen",
    "Promo2Weeks",
    "IsPromo2Month",
]
ELAPSED = [f"{side}{event}" for event in EVENTS for side in ("After", "Before")]
CONT_NAMES = ["CompetitionDistance", *ELAPSED, "Promo", "SchoolHoliday"]
MISSABLE = ["CompetitionDistance", *ELAPSED]
"""Continuous columns that can be missing: each gets a ``<name>_na`` flag."""
CAT_NAMES = ["Store", *DATE_CATS, *FLAG_CATS, "StateHoliday", *STORE_CATS, *[f"{c}_na" for c in MISSABLE]]
CAT_SOURCE = {
    "Store": "Store",
    **{c: "Date" for c in DATE_CATS + FLAG_CATS},
    "StateHoliday": "StateHoliday",
    **{c: "Store" for c in STORE_CATS},
}
"""Which request field an unknown category comes from (flags are never unknown)."""
FIXED_VOCAB = {**{c: ["False", "True"] for c in FLAG_CATS}, **{f"{c}_na": ["False", "True"] for c in MISSABLE}}
"""Boolean columns have both values known, whatever training saw."""


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


# --------------------------------------------------------------------------- generator


def easter(year: int) -> date:
    """Gregorian Easter Sunday (anonymous Gregorian algorithm)."""
    a, b, c = year % 19, year // 100, year % 100
    d, e = b // 4, b % 4
    f = (b + 8) // 25
    g = (b - f + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = c // 4, c % 4
    l_ = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * l_) // 451
    month = (h + l_ - 7 * m + 114) // 31
    day = (h + l_ - 7 * m + 114) % 31 + 1
    return date(year, month, day)


def state_holidays(year: int, state: int) -> dict[date, str]:
    """A German-style calendar of public holidays for one of three "states": date -> a/b/c."""
    e = easter(year)
    days = {
        date(year, 1, 1): "a",
        e - timedelta(days=2): "b",
        e + timedelta(days=1): "b",
        date(year, 5, 1): "a",
        e + timedelta(days=39): "a",
        e + timedelta(days=50): "a",
        date(year, 10, 3): "a",
        date(year, 12, 25): "c",
        date(year, 12, 26): "c",
    }
    if state == 0:
        days[date(year, 1, 6)] = "a"
        days[date(year, 11, 1)] = "a"
    if state in (0, 1):
        days[e + timedelta(days=60)] = "a"
    return days


def school_holidays(year: int, state: int) -> set[date]:
    """School holidays of one state: winter, Easter, summer (staggered by state), autumn, Christmas."""
    e = easter(year)
    spans = [
        (date(year, 2, 3) + timedelta(days=7 * state), 5),
        (e - timedelta(days=8), 16),
        (date(year, 6, 22) + timedelta(days=14 * state + 7 * (year % 2)), 44),
        (date(year, 10, 12) + timedelta(days=7 * state), 12),
        (date(year, 12, 22), 10),
        (date(year, 1, 1), 5),
    ]
    return {start + timedelta(days=i) for start, n in spans for i in range(n)}


def generate_rossmann(
    n_stores: int = 50, start: str = "2013-01-01", end: str = "2015-07-31", seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A synthetic Rossmann: ``(train, store)`` in Kaggle's schema, the same for the same arguments.

    Sales follow store level and type, day of week, alternating promo weeks
    (store-specific lift, more on Mondays), yearly seasonality and a Christmas
    rush, shopping before and after public holidays, school holidays, the start
    and end of the month, a per-store trend, competitors opening nearby, Promo2
    months, and noise. Stores close on Sundays and public holidays (type ``b``
    stays open), some for refurbishment, some on random days.
    """
    rng = np.random.default_rng(seed)
    dates = pd.date_range(start, end, freq="D")
    n_days = len(dates)
    stores = np.arange(1, n_stores + 1)
    state = rng.integers(0, 3, n_stores)

    store_type = rng.choice(np.array(["a", "b", "c", "d"]), n_stores, p=[0.5, 0.05, 0.13, 0.32])
    if n_stores >= 10:
        store_type[3] = "b"
    assortment = np.where(store_type == "b", "b", rng.choice(np.array(["a", "c"]), n_stores, p=[0.55, 0.45]))
    distance = np.clip(np.round(np.exp(rng.normal(7.6, 1.2, n_stores)) / 10) * 10, 20, 75_000)
    distance[rng.random(n_stores) < 0.03] = np.nan
    if n_stores >= 20:
        distance[7] = np.nan
    # Competition: a third unknown, a fifth opening during the data, the rest older.
    comp_kind = rng.choice(3, n_stores, p=[0.3, 0.22, 0.48])
    first = dates[0]
    comp_open = [
        None
        if kind == 0 or np.isnan(distance[s])
        else first + pd.Timedelta(days=int(rng.integers(min(60, n_days // 3), max(min(60, n_days // 3) + 1, n_days - 90))))
        if kind == 1
        else pd.Timestamp(int(rng.integers(2000, 2013)), int(rng.integers(1, 13)), 1)
        for s, kind in enumerate(comp_kind)
    ]
    promo2 = rng.random(n_stores) < 0.5
    promo2_since = [
        pd.Timestamp.fromisocalendar(int(rng.integers(2009, 2015)), int(rng.integers(1, 53)), 1) if p else None for p in promo2
    ]
    promo_interval = np.array([PROMO_INTERVALS[i] for i in rng.integers(0, 3, n_stores)])

    # Calendars: holidays per state (a year past the end too, for "days until"), promo weeks chain-wide.
    years = range(dates[0].year, dates[-1].year + 2)
    holiday_maps = [{d: t for y in years for d, t in state_holidays(y, s).items()} for s in range(3)]
    school_sets = [{d for y in years for d in school_holidays(y, s)} for s in range(3)]
    day_list = [d.date() for d in dates]
    holiday_type = np.array([[holiday_maps[s].get(d, "0") for d in day_list] for s in state])  # (stores, days)
    is_holiday = holiday_type != "0"
    school = np.array([[d in school_sets[s] for d in day_list] for s in state])
    dow = dates.dayofweek.to_numpy() + 1  # 1 = Monday
    week_index = (dates - pd.Timestamp("2013-01-07")).days.to_numpy() // 7
    promo_day = (week_index % 2 == 0) & (dow <= 5)

    def days_to_holiday(s: int, sign: int) -> np.ndarray:
        hol = np.array(sorted(holiday_maps[s]), dtype="datetime64[D]").astype(np.int64)
        t = dates.values.astype("datetime64[D]").astype(np.int64)
        if sign > 0:
            nxt = hol[np.clip(np.searchsorted(hol, t, "right"), 0, len(hol) - 1)]
            return np.where(nxt > t, nxt - t, 999)
        prv = hol[np.clip(np.searchsorted(hol, t, "left") - 1, 0, len(hol) - 1)]
        return np.where(prv < t, t - prv, 999)

    until_h = np.stack([days_to_holiday(s, +1) for s in state])
    since_h = np.stack([days_to_holiday(s, -1) for s in state])

    # Who is open.
    open_ = np.ones((n_stores, n_days), dtype=bool)
    not_b = (store_type != "b")[:, None]
    open_ &= ~((dow == 7)[None, :] & not_b)
    open_ &= ~(is_holiday & not_b)
    for s in rng.choice(n_stores, max(1, n_stores // 12), replace=False):
        begin = int(rng.integers(200, max(201, n_days - 120)))
        open_[s, begin : begin + int(rng.integers(7, 40))] = False
    open_ &= rng.random((n_stores, n_days)) > 0.001

    # Log sales of an open day.
    base = np.log(rng.uniform(3500, 9000, n_stores)) + 0.45 * (store_type == "b") + 0.08 * (assortment == "c")
    dow_effect = np.array([0.0, 0.16, 0.02, -0.03, 0.0, 0.06, -0.08, -0.05])  # index 1..7
    promo_lift = rng.uniform(0.15, 0.38, n_stores)
    doy = dates.dayofyear.to_numpy()
    season = 0.045 * np.sin(2 * np.pi * (doy - 80) / 365.25)
    dec = (dates.month.to_numpy() == 12) & (dates.day.to_numpy() <= 24)
    christmas = np.where(dec, 0.35 * (dates.day.to_numpy() / 24.0) ** 2, 0.0)
    month_day = dates.day.to_numpy()
    month_end = np.asarray(dates.is_month_end) | np.asarray((dates + pd.Timedelta(days=1)).is_month_end)
    payday = 0.06 * (month_day <= 3) + 0.035 * month_end
    years_in = (dates - first).days.to_numpy() / 365.25
    trend = rng.normal(0.02, 0.04, n_stores)
    school_effect = rng.normal(0.03, 0.05, n_stores)
    shock = rng.normal(0.0, 0.03, (3, n_days))[state]

    log_sales = (
        base[:, None]
        + dow_effect[dow][None, :]
        + promo_day[None, :] * (promo_lift[:, None] + 0.08 * (dow == 1)[None, :])
        + season[None, :]
        + christmas[None, :]
        + payday[None, :]
        + trend[:, None] * years_in[None, :]
        + school * school_effect[:, None]
        + 0.18 * (until_h == 1)
        + 0.08 * (until_h == 2)
        + 0.10 * (since_h == 1)
        + 0.04 * (since_h == 2)
        + shock
    )
    for s, opened in enumerate(comp_open):
        if opened is not None and opened > first:
            months = (dates - opened).days.to_numpy() / 30.4
            strength = 0.05 + 0.15 * np.exp(-distance[s] / 3000.0)
            log_sales[s] -= strength * np.clip(months / 3.0, 0.0, 1.0) * (months >= 0)
    for s in np.flatnonzero(promo2):
        in_month = np.isin(dates.month.to_numpy(), [MONTH_ABBR.index(m) + 1 for m in promo_interval[s].split(",")])
        log_sales[s] += 0.03 * (in_month & (dates >= promo2_since[s]))
    log_sales += rng.normal(0.0, 0.06, (n_stores, n_days))
    sales = np.where(open_, np.round(np.exp(log_sales)), 0).astype(np.int64)
    basket = rng.uniform(8.0, 11.5, n_stores)
    customers = np.where(open_, np.round(sales / basket[:, None] * np.exp(rng.normal(0, 0.04, sales.shape))), 0).astype(np.int64)

    # Kaggle's order: newest day first, stores ascending within a day.
    order = np.arange(n_days)[::-1]
    train = pd.DataFrame(
        {
            "Store": np.tile(stores, n_days),
            "DayOfWeek": np.repeat(dow[order], n_stores),
            "Date": np.repeat(dates[order].strftime("%Y-%m-%d").to_numpy(), n_stores),
            "Sales": sales[:, order].T.ravel(),
            "Customers": customers[:, order].T.ravel(),
            "Open": open_[:, order].T.ravel().astype(np.int64),
            "Promo": np.repeat(promo_day[order].astype(np.int64), n_stores),
            "StateHoliday": holiday_type[:, order].T.ravel(),
            "SchoolHoliday": school[:, order].T.ravel().astype(np.int64),
        }
    )
    comp_since = [(o.month, o.year) if o is not None else (np.nan, np.nan) for o in comp_open]
    store = pd.DataFrame(
        {
            "Store": stores,
            "StoreType": store_type,
            "Assortment": assortment,
            "CompetitionDistance": distance,
            "CompetitionOpenSinceMonth": [m for m, _ in comp_since],
            "CompetitionOpenSinceYear": [y for _, y in comp_since],
            "Promo2": promo2.astype(np.int64),
            "Promo2SinceWeek": [p.isocalendar()[1] if p is not None else np.nan for p in promo2_since],
            "Promo2SinceYear": [p.isocalendar()[0] if p is not None else np.nan for p in promo2_since],
            "PromoInterval": [pi if p else None for pi, p in zip(promo_interval, promo2)],
        }
    )
    return train, store


def _cell(value: Any) -> str:
    """One CSV cell as Kaggle writes it: integers without ``.0``, empty for missing, quotes around commas."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    text = str(value)
    return f'"{text}"' if "," in text else text


def write_csv(df: pd.DataFrame, path: Path) -> None:
    """Write ``df`` with fixed formatting: the same frame always gives the same bytes."""
    cells = [
        df[c].to_numpy().astype(str) if pd.api.types.is_integer_dtype(df[c]) else [_cell(v) for v in df[c].to_numpy(dtype=object)]
        for c in df.columns
    ]
    lines = [",".join(df.columns), *(",".join(row) for row in zip(*cells))]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_rossmann(folder: Path, n_stores: int = 50, start: str = "2013-01-01", end: str = "2015-07-31", seed: int = 0) -> Path:
    """Generate the synthetic sample into ``folder``: ``train.csv``, ``store.csv`` and a README saying what it is."""
    train, store = generate_rossmann(n_stores, start, end, seed)
    folder.mkdir(parents=True, exist_ok=True)
    write_csv(train, folder / "train.csv")
    write_csv(store, folder / "store.csv")
    (folder / "README.txt").write_text(
        "SYNTHETIC DATA. Generated by course-zoo (models/tasks/sales.py, generate_rossmann) in the schema of\n"
        "Kaggle's Rossmann Store Sales train.csv and store.csv; it is not Rossmann's data.\n"
        f"{n_stores} stores, {start} to {end}, seed {seed}.\n",
        encoding="utf-8",
    )
    return folder


# --------------------------------------------------------------------------- reading and validation


def read_tables(root: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``train.csv`` and ``store.csv`` from ``root`` as read (Kaggle's or the sample), not converted."""
    for name in ("train.csv", "store.csv"):
        if not (root / name).is_file():
            raise FileNotFoundError(f"{root}: no {name}")
    train = pd.read_csv(root / "train.csv", dtype={"StateHoliday": str, "Date": str}, low_memory=False)
    store = pd.read_csv(root / "store.csv", dtype={"StoreType": str, "Assortment": str, "PromoInterval": str})
    for df, columns, name in ((train, TRAIN_COLUMNS, "train.csv"), (store, STORE_COLUMNS, "store.csv")):
        missing = [c for c in columns if c not in df.columns]
        if missing:
            raise ValueError(f"{root / name} lacks columns {missing}")
    return train, store


def train_schema(min_rows: int = 100, max_rows: int = 100_000_000):
    """The declared schema of ``train.csv`` (pandera)."""
    import pandera.pandas as pa

    flag = [pa.Check.isin([0, 1])]

    def dow_matches(df: pd.DataFrame) -> pd.Series:
        return df["DayOfWeek"] == pd.to_datetime(df["Date"], format="%Y-%m-%d", errors="coerce").dt.dayofweek + 1

    return pa.DataFrameSchema(
        {
            "Store": pa.Column("int64", pa.Check.ge(1), nullable=False, coerce=True),
            "DayOfWeek": pa.Column("int64", pa.Check.in_range(1, 7), nullable=False, coerce=True),
            "Date": pa.Column(str, pa.Check.str_matches(r"^\d{4}-\d{2}-\d{2}$"), nullable=False),
            "Sales": pa.Column("int64", pa.Check.ge(0), nullable=False, coerce=True),
            "Customers": pa.Column("int64", pa.Check.ge(0), nullable=False, coerce=True),
            "Open": pa.Column("int64", flag, nullable=False, coerce=True),
            "Promo": pa.Column("int64", flag, nullable=False, coerce=True),
            "StateHoliday": pa.Column(str, pa.Check.isin(STATE_HOLIDAYS), nullable=False),
            "SchoolHoliday": pa.Column("int64", flag, nullable=False, coerce=True),
        },
        checks=[
            pa.Check(lambda df: min_rows <= len(df) <= max_rows, error=f"row count outside [{min_rows}, {max_rows}]"),
            pa.Check(dow_matches, error="DayOfWeek is not the weekday of Date (1 = Monday)"),
            pa.Check(lambda df: (df["Open"] == 1) | (df["Sales"] == 0), error="a closed day has sales"),
            pa.Check(lambda df: ~df.duplicated(["Store", "Date"]), error="a (Store, Date) appears twice"),
        ],
        strict=True,
    )


def store_schema():
    """The declared schema of ``store.csv`` (pandera)."""
    import pandera.pandas as pa

    def years(nullable: bool = True) -> pa.Column:
        return pa.Column("float64", pa.Check.in_range(1900, 2100), nullable=nullable, coerce=True)

    return pa.DataFrameSchema(
        {
            "Store": pa.Column("int64", pa.Check.ge(1), nullable=False, unique=True, coerce=True),
            "StoreType": pa.Column(str, pa.Check.isin(["a", "b", "c", "d"]), nullable=False),
            "Assortment": pa.Column(str, pa.Check.isin(["a", "b", "c"]), nullable=False),
            "CompetitionDistance": pa.Column("float64", pa.Check.ge(0), nullable=True, coerce=True),
            "CompetitionOpenSinceMonth": pa.Column("float64", pa.Check.in_range(1, 12), nullable=True, coerce=True),
            "CompetitionOpenSinceYear": years(),
            "Promo2": pa.Column("int64", pa.Check.isin([0, 1]), nullable=False, coerce=True),
            "Promo2SinceWeek": pa.Column("float64", pa.Check.in_range(1, 53), nullable=True, coerce=True),
            "Promo2SinceYear": years(),
            "PromoInterval": pa.Column(str, pa.Check.isin(PROMO_INTERVALS), nullable=True),
        },
        checks=[pa.Check(lambda df: len(df) >= 1, error="no stores")],
        strict=True,
    )


def _problems(exc: Exception, file: str) -> list[str]:
    cases = exc.failure_cases  # type: ignore[attr-defined]
    return [
        f"{file}: {row.column if isinstance(row.column, str) else 'table'}: {row.check} failed"
        + (f" (e.g. {row.failure_case!r})" if row.failure_case is not None else "")
        for row in cases.drop_duplicates(["column", "check"]).itertuples()
    ]


# --------------------------------------------------------------------------- features


def _key(value: Any) -> str:
    """A category's vocabulary key: integers without ``.0``, ``#na#`` for missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return NA
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _keys(values: pd.Series) -> pd.Series:
    if pd.api.types.is_bool_dtype(values):
        return values.map({True: "True", False: "False"}).astype(object)
    if pd.api.types.is_numeric_dtype(values):
        out = values.astype("float64")
        text = out.map(lambda v: NA if math.isnan(v) else str(int(v)) if float(v).is_integer() else str(v))
        return text.astype(object)
    return values.map(_key).astype(object)


def _days(dates: pd.Series | pd.DatetimeIndex) -> np.ndarray:
    """Dates -> int64 days since 1970-01-01."""
    return np.asarray(pd.DatetimeIndex(dates).values.astype("datetime64[D]").astype(np.int64))


def _intervals(days: np.ndarray) -> list[list[str]]:
    """Sorted unique days -> runs of consecutive days as ``[first, last]`` ISO dates."""
    if len(days) == 0:
        return []
    breaks = np.flatnonzero(np.diff(days) != 1)
    starts = np.concatenate([[days[0]], days[breaks + 1]])
    ends = np.concatenate([days[breaks], [days[-1]]])
    iso = lambda d: str(np.datetime64(int(d), "D"))  # noqa: E731
    return [[iso(a), iso(b)] for a, b in zip(starts, ends)]


def _from_intervals(runs: list[list[str]]) -> np.ndarray:
    parts = [np.arange(np.datetime64(a, "D").astype(np.int64), np.datetime64(b, "D").astype(np.int64) + 1) for a, b in runs]
    return np.concatenate(parts).astype(np.int64) if parts else np.empty(0, dtype=np.int64)


def event_flags(frame: Records) -> dict[str, np.ndarray]:
    """Which rows are a day of each event: a state holiday (not ``"0"``), a school holiday, a promo."""
    return {
        "StateHoliday": np.asarray(frame["StateHoliday"]).astype(str) != "0",
        "SchoolHoliday": np.asarray(frame["SchoolHoliday"]) == 1,
        "Promo": np.asarray(frame["Promo"]) == 1,
    }


def build_calendars(rows: pd.DataFrame) -> dict[str, Any]:
    """Per event, each store's days as runs of dates; stores with the same days share one table.

    ``default`` is the table most stores have: an unknown store gets it.
    """
    day = _days(rows["Date"])
    store = rows["Store"].to_numpy()
    flags = event_flags(rows)
    out: dict[str, Any] = {}
    for event in EVENTS:
        tables: list[list[list[str]]] = []
        index: dict[tuple[int, ...], int] = {}
        stores: dict[str, int] = {}
        counts: list[int] = []
        hit = flags[event]
        for s in np.unique(store):
            days = np.unique(day[hit & (store == s)])
            key = tuple(days.tolist())
            if key not in index:
                index[key] = len(tables)
                tables.append(_intervals(days))
                counts.append(0)
            stores[str(int(s))] = index[key]
            counts[index[key]] += 1
        out[event] = {"tables": tables, "stores": stores, "default": int(np.argmax(counts)) if counts else 0}
    return out


def store_table(store: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """``store.csv`` as JSON: store id -> its row (``None`` for missing)."""
    table = {}
    for row in store.to_dict("records"):
        clean = {}
        for k, v in row.items():
            if k == "Store":
                continue
            if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA:
                clean[k] = None
            elif isinstance(v, (np.integer, int)) and not isinstance(v, bool):
                clean[k] = int(v)
            elif isinstance(v, (np.floating, float)):
                clean[k] = float(v)
            else:
                clean[k] = str(v)
        table[str(int(row["Store"]))] = clean
    return table


def elapsed(events: np.ndarray, day: np.ndarray, today: np.ndarray, cap: int) -> tuple[np.ndarray, np.ndarray]:
    """Days since the last and until the next event (0 on an event day), capped; NaN when none is known.

    ``events`` are sorted unique event days, ``day`` the rows' days, ``today``
    whether each row is itself an event day (the record's own flag wins).
    """
    after = np.full(len(day), np.nan)
    before = np.full(len(day), np.nan)
    if len(events):
        prev = np.searchsorted(events, day, side="left") - 1
        has = prev >= 0
        after[has] = day[has] - events[prev[has]]
        nxt = np.searchsorted(events, day, side="right")
        has = nxt < len(events)
        before[has] = events[nxt[has]] - day[has]
    after[today] = 0
    before[today] = 0
    return np.minimum(after, cap), np.minimum(before, cap)


@dataclass
class Features:
    """Model inputs for a frame of records, plus what was unknown."""

    cats: np.ndarray
    conts: np.ndarray
    unknown: list[list[str]] = field(default_factory=list)
    """Per row, the request fields whose value mapped to the unknown index."""

    def unknown_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for fields in self.unknown:
            for f in fields:
                counts[f] = counts.get(f, 0) + 1
        return counts


def _num(value: Any) -> float:
    """A store-table value as a float (NaN when missing or not a number), as ``pd.to_numeric(errors="coerce")``."""
    if value is None or isinstance(value, bool):
        return float(value) if isinstance(value, bool) else math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


SMALL = 64
"""Up to this many records, keys are made value by value (cheaper than ``np.unique``)."""


def _mapped_keys(values: np.ndarray, key: Any) -> np.ndarray:
    """``key`` of each value as an object array: value by value for a few, else once per distinct value."""
    if len(values) <= SMALL:
        return np.array([key(v) for v in values], dtype=object)
    uniq, inv = np.unique(values, return_inverse=True)
    return np.array([key(v) for v in uniq], dtype=object)[inv.reshape(-1)]


def _float_keys(values: np.ndarray) -> np.ndarray:
    """Vocabulary keys of float values (see :func:`_key`)."""
    return _mapped_keys(np.asarray(values, dtype=np.float64), lambda v: _key(float(v)))


def _int_keys(values: np.ndarray) -> np.ndarray:
    return _mapped_keys(np.asarray(values, dtype=np.int64), lambda v: str(int(v)))


def _flag_keys(values: np.ndarray) -> np.ndarray:
    return np.where(values, "True", "False").astype(object)


def to_days(values: Any) -> np.ndarray:
    """Dates (``YYYY-MM-DD`` strings or datetimes) -> int64 days since 1970-01-01."""
    arr = np.asarray(values)
    if np.issubdtype(arr.dtype, np.datetime64):
        return arr.astype("datetime64[D]").astype(np.int64)
    try:
        return arr.astype("datetime64[D]").astype(np.int64)
    except (TypeError, ValueError):  # other spellings pandas understands
        return _days(pd.DatetimeIndex(pd.to_datetime(pd.Series(arr))))


@dataclass(frozen=True)
class DateParts:
    """Calendar parts of int64 days since 1970-01-01, computed with numpy alone."""

    year: np.ndarray
    month: np.ndarray
    day: np.ndarray
    weekday: np.ndarray
    """1 = Monday ... 7 = Sunday."""
    iso_week: np.ndarray

    @classmethod
    def of(cls, days: np.ndarray) -> "DateParts":
        d = days.astype("datetime64[D]")
        months = d.astype("datetime64[M]")
        year = months.astype("datetime64[Y]").astype(np.int64) + 1970
        month = months.astype(np.int64) % 12 + 1
        day = (d - months).astype(np.int64) + 1
        weekday = (days + 3) % 7 + 1  # 1970-01-01 was a Thursday
        thursday = days - weekday + 4  # the ISO week's Thursday decides its year
        iso_year_start = thursday.astype("datetime64[D]").astype("datetime64[Y]").astype("datetime64[D]").astype(np.int64)
        iso_week = (thursday - iso_year_start) // 7 + 1
        return cls(year, month, day, weekday, iso_week)

    def flags(self, days: np.ndarray) -> dict[str, np.ndarray]:
        """The course's ``Is_*`` start and end flags."""
        next_month = DateParts.of(days + 1).month
        month_end = next_month != self.month
        month_start = self.day == 1
        return {
            "Is_month_end": month_end,
            "Is_month_start": month_start,
            "Is_quarter_end": month_end & (self.month % 3 == 0),
            "Is_quarter_start": month_start & (self.month % 3 == 1),
            "Is_year_end": month_end & (self.month == 12),
            "Is_year_start": month_start & (self.month == 1),
        }


class StoreArrays:
    """The spec's store table as arrays, one row per known store plus a last row for an unknown store."""

    def __init__(self, stores: dict[str, dict[str, Any]]) -> None:
        self.ids = np.array(sorted(int(s) for s in stores), dtype=np.int64)
        rows = [stores[str(s)] for s in self.ids] + [{}]
        col = lambda c: np.array([_num(r.get(c)) for r in rows], dtype=np.float64)  # noqa: E731
        self.distance = col("CompetitionDistance")
        self.comp_year, self.comp_month = col("CompetitionOpenSinceYear"), col("CompetitionOpenSinceMonth")
        self.promo2 = col("Promo2") == 1
        self.promo2_year = col("Promo2SinceYear")
        self.promo2_start = np.full(len(rows), np.nan)
        self.months = np.zeros((len(rows), 13), dtype=bool)
        week = col("Promo2SinceWeek")
        for i, row in enumerate(rows):
            y, w = self.promo2_year[i], week[i]
            if self.promo2[i] and not math.isnan(y) and not math.isnan(w):
                self.promo2_start[i] = (date.fromisocalendar(int(y), int(w), 1) - date(1970, 1, 1)).days
            interval = row.get("PromoInterval")
            if isinstance(interval, str):
                for m in interval.split(","):
                    if m in MONTH_ABBR:
                        self.months[i, MONTH_ABBR.index(m) + 1] = True
        self.text_keys = {c: np.array([_key(r.get(c)) for r in rows], dtype=object) for c in ("StoreType", "Assortment", "PromoInterval")}

    def rows(self, store: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each store id's row (the last row for an unknown id) and whether it is known."""
        pos = np.searchsorted(self.ids, store)
        known = pos < len(self.ids)
        known[known] = self.ids[pos[known]] == store[known]
        return np.where(known, pos, len(self.ids)), known


class Preprocessor:
    """The one feature pipeline: records (Kaggle ``train.csv``/``test.csv`` columns) -> model inputs.

    ``spec`` holds the store table, the event calendars, the category
    vocabularies and the continuous columns' medians, means and standard
    deviations. Without vocabularies yet (while fitting), :meth:`raw` still works.
    Records come as a DataFrame or as a mapping of column arrays; everything is
    numpy, so that one record (a request) costs well under a millisecond and a
    million (training) stays vectorised.
    """

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.cap = int(spec["elapsed_cap"])
        self.stores = spec["stores"]
        self.table = StoreArrays(self.stores)
        self.calendars = {
            event: {
                "tables": [_from_intervals(t) for t in cal["tables"]],
                "stores": {int(s): i for s, i in cal["stores"].items()},
                "default": int(cal["default"]),
            }
            for event, cal in spec["calendars"].items()
        }
        self.vocab = {c: {k: i + 1 for i, k in enumerate(v)} for c, v in spec.get("vocab", {}).items()}

    def _calendar(self, event: str, store: int) -> np.ndarray:
        cal = self.calendars[event]
        tables = cal["tables"]
        if not tables:
            return np.empty(0, dtype=np.int64)
        return tables[cal["stores"].get(store, cal["default"])]

    def columns(self, records: Records) -> dict[str, np.ndarray]:
        """Feature values before encoding: category keys (object arrays of strings, ``None`` for a store's
        metadata when the store is unknown) and continuous values as float64 (NaN = missing).

        ``records`` needs Store, Date (``YYYY-MM-DD`` or datetime), Promo,
        StateHoliday, SchoolHoliday. The event calendars are the spec's, plus
        the events in ``records`` themselves (so a client's future weeks count).
        """
        day = to_days(records["Date"])
        n = len(day)
        store = np.asarray(records["Store"]).astype(np.int64)
        parts = DateParts.of(day)
        out: dict[str, np.ndarray] = {"Store": _int_keys(store)}
        out["DayOfWeek"] = _int_keys(parts.weekday)
        out["Year"] = _int_keys(parts.year)
        out["Month"] = _int_keys(parts.month)
        out["Week"] = _int_keys(parts.iso_week)
        out["Day"] = _int_keys(parts.day)
        for name, values in parts.flags(day).items():
            out[name] = _flag_keys(values)
        holiday = np.asarray(records["StateHoliday"]).astype(str).astype(object)
        out["StateHoliday"] = holiday

        # The store table joined; an unknown store has no metadata (its categories are unknown, distance missing).
        row, known = self.table.rows(store)
        t = self.table
        comp_year = t.comp_year[row]
        comp_months = np.clip(12 * (parts.year - comp_year) + (parts.month - t.comp_month[row]), 0, 24)
        promo2, promo2_start = t.promo2[row], t.promo2_start[row]
        promo2_weeks = np.where(promo2, np.clip((day - promo2_start) // 7, 0, 25), np.nan)
        in_month = promo2 & t.months[row, parts.month] & (day >= np.nan_to_num(promo2_start, nan=np.inf))
        store_keys = {
            "StoreType": t.text_keys["StoreType"][row],
            "Assortment": t.text_keys["Assortment"][row],
            "PromoInterval": t.text_keys["PromoInterval"][row],
            "CompetitionOpenSinceYear": _float_keys(comp_year),
            "Promo2SinceYear": _float_keys(t.promo2_year[row]),
            "CompetitionMonthsOpen": _float_keys(comp_months),
            "Promo2Weeks": _float_keys(promo2_weeks),
            "IsPromo2Month": _flag_keys(in_month),
        }
        for name, keys in store_keys.items():
            out[name] = np.where(known, keys, None)
        out["CompetitionDistance"] = np.log1p(t.distance[row])

        # Days since and until each event, per store: the spec's calendar plus these records' own events.
        flags = event_flags(records)
        for event in EVENTS:
            after, before = np.full(n, np.nan), np.full(n, np.nan)
            for s in np.unique(store):
                rows = np.flatnonzero(store == s)
                events = np.union1d(self._calendar(event, int(s)), day[rows][flags[event][rows]])
                after[rows], before[rows] = elapsed(events, day[rows], flags[event][rows], self.cap)
            out[f"After{event}"], out[f"Before{event}"] = after, before
        out["Promo"] = np.asarray(records["Promo"]).astype(np.float64)
        out["SchoolHoliday"] = np.asarray(records["SchoolHoliday"]).astype(np.float64)
        for c in MISSABLE:
            out[f"{c}_na"] = _flag_keys(np.isnan(out[c]))
        return out

    def raw(self, records: Records) -> pd.DataFrame:
        """:meth:`columns` as a DataFrame (categories as object columns, continuous as float64)."""
        return pd.DataFrame({k: np.asarray(v, dtype=object if k in CAT_NAMES else np.float64) for k, v in self.columns(records).items()})

    def encode(self, raw: Records) -> Features:
        """Raw feature values -> int64 category indices (0 = unknown) and normalised float32 columns."""
        n = len(raw[CAT_NAMES[0]])
        cats = np.zeros((n, len(CAT_NAMES)), dtype=np.int64)
        unknown_by_source: dict[str, np.ndarray] = {}
        for j, name in enumerate(CAT_NAMES):
            vocab = self.vocab[name]
            keys = np.asarray(raw[name], dtype=object)
            col = np.fromiter((vocab.get(k, 0) if k is not None else 0 for k in keys), dtype=np.int64, count=n)
            cats[:, j] = col
            source = CAT_SOURCE.get(name)
            if source is not None:
                unknown_by_source[source] = unknown_by_source.get(source, np.zeros(n, dtype=bool)) | (col == 0)
        conts = np.zeros((n, len(CONT_NAMES)), dtype=np.float32)
        for j, name in enumerate(CONT_NAMES):
            x = np.asarray(raw[name], dtype=np.float64)
            x = np.where(np.isnan(x), self.spec["medians"][name], x)
            conts[:, j] = (x - self.spec["means"][name]) / self.spec["stds"][name]
        sources = list(unknown_by_source)
        unknown = [[s for s in sources if unknown_by_source[s][i]] for i in range(n)]
        return Features(cats, conts, unknown)

    def transform(self, records: Records) -> Features:
        return self.encode(self.columns(records))


def fit_spec(all_rows: pd.DataFrame, store: pd.DataFrame, train_rows: pd.DataFrame, config: SalesConfig) -> tuple[Spec, pd.DataFrame]:
    """Fit the spec: calendars from every row, vocabularies and statistics from the training rows.

    Returns the spec and the training rows' raw features.
    """
    spec: Spec = {
        "elapsed_cap": config.elapsed_cap,
        "stores": store_table(store),
        "calendars": build_calendars(all_rows),
    }
    raw = Preprocessor(spec).raw(train_rows)
    vocab = {}
    for name in CAT_NAMES:
        if name in FIXED_VOCAB:
            vocab[name] = FIXED_VOCAB[name]
        else:
            keys = {k for k in raw[name].to_numpy(dtype=object) if k is not None}
            vocab[name] = sorted(keys, key=lambda k: (k == NA, len(k), k))
    medians, means, stds = {}, {}, {}
    for name in CONT_NAMES:
        x = raw[name].to_numpy(dtype=np.float64)
        med = float(np.nanmedian(x)) if np.any(~np.isnan(x)) else 0.0
        filled = np.where(np.isnan(x), med, x)
        medians[name], means[name] = med, float(filled.mean())
        std = float(filled.std())
        stds[name] = std if std > 1e-6 else 1.0
    spec.update(
        {
            "cat_names": CAT_NAMES,
            "cont_names": CONT_NAMES,
            "vocab": vocab,
            "cat_sources": CAT_SOURCE,
            "medians": medians,
            "means": means,
            "stds": stds,
        }
    )
    return spec, raw


# --------------------------------------------------------------------------- model


def emb_size(n: int) -> int:
    """fast.ai's rule of thumb for an embedding's width from its vocabulary size."""
    return min(600, round(1.6 * n**0.56))


class TabularModel(nn.Module):
    """The course's tabular model: entity embeddings + normalised continuous -> MLP -> sigmoid range."""

    def __init__(
        self,
        cardinalities: list[int],
        n_cont: int,
        layers: tuple[int, ...],
        ps: tuple[float, ...],
        emb_drop: float,
        y_range: tuple[float, float],
        y_start: float | None = None,
    ) -> None:
        super().__init__()
        self.embeds = nn.ModuleList(nn.Embedding(n, emb_size(n)) for n in cardinalities)
        for emb in self.embeds:
            nn.init.trunc_normal_(emb.weight, std=0.01)
        self.emb_drop = nn.Dropout(emb_drop)
        self.bn_cont = nn.BatchNorm1d(n_cont)
        n_in = sum(e.embedding_dim for e in self.embeds) + n_cont
        blocks: list[nn.Module] = []
        for n_out, p in zip(layers, ps):
            blocks += [nn.Linear(n_in, n_out), nn.ReLU(), nn.BatchNorm1d(n_out)]
            if p:
                blocks.append(nn.Dropout(p))
            n_in = n_out
        blocks.append(nn.Linear(n_in, 1))
        self.layers = nn.Sequential(*blocks)
        self.y_low, self.y_high = y_range
        if y_start is not None:  # start at the typical target, not mid-range: no epochs lost climbing out of the sigmoid
            share = min(max((y_start - self.y_low) / (self.y_high - self.y_low), 1e-3), 1 - 1e-3)
            with torch.no_grad():
                blocks[-1].bias.fill_(math.log(share / (1 - share)))

    def forward(self, cats: torch.Tensor, conts: torch.Tensor) -> torch.Tensor:
        x = torch.cat([emb(cats[:, i]) for i, emb in enumerate(self.embeds)], dim=1)
        x = torch.cat([self.emb_drop(x), self.bn_cont(conts)], dim=1)
        return (torch.sigmoid(self.layers(x)) * (self.y_high - self.y_low) + self.y_low).squeeze(1)


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
    for c in ("Store", "DayOfWeek", "Sales", "Customers", "Open", "Promo", "SchoolHoliday"):
        df[c] = df[c].astype(np.int64)
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
        source = os.environ.get(DATA_ENV, "").strip()
        if source:
            folder = Path(source).expanduser()
            target.mkdir(parents=True, exist_ok=True)
            for file in ("train.csv", "store.csv"):
                if not (folder / file).is_file():
                    raise FileNotFoundError(f"{DATA_ENV}={source} has no {file}")
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
                problems.extend(_problems(exc, file))
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

    def load(self, data_dir: Path, config: TrainConfig) -> Dataset:
        assert isinstance(config, SalesConfig)
        train_raw, store = read_tables(data_dir / config.dataset)
        rows = prepare_rows(train_raw)
        valid_start = rows["Date"].max() - pd.Timedelta(days=7 * config.valid_weeks - 1)
        useful = rows[(rows["Open"] == 1) & (rows["Sales"] > 0)]
        train = useful[useful["Date"] < valid_start]
        valid = useful[useful["Date"] >= valid_start]
        if train.empty or valid.empty:
            raise ValueError(f"{data_dir / config.dataset}: empty training or validation split (validation from {valid_start.date()})")
        # The spec (vocabularies, statistics) is fitted on the whole training split; ``limit`` only trims the examples.
        spec, raw_train = fit_spec(rows, store, train, config)
        n = min(len(train), config.limit or len(train))
        n -= int(n % config.batch_size == 1)  # a last batch of one row cannot go through batch norm in training mode
        train, raw_train = train.iloc[len(train) - n :], raw_train.iloc[len(raw_train) - n :]
        if config.limit:
            valid = valid.iloc[: config.limit]
        spec["y_range"] = [0.0, float(np.log(train["Sales"].max() * config.y_margin))]
        spec["y_mean"] = float(np.log(train["Sales"].to_numpy(dtype=np.float64)).mean())
        spec["valid_start"] = str(valid_start.date())
        spec["data_end"] = str(rows["Date"].max().date())
        prep = Preprocessor(spec)
        tf = prep.encode(raw_train)
        vf = prep.transform(valid)
        keep = ["Store", "Date", "DayOfWeek", "Promo", "Sales"]
        extras = {"train": train[keep].reset_index(drop=True), "valid": valid[keep].reset_index(drop=True)}
        ty = np.log(train["Sales"].to_numpy(dtype=np.float64)).astype(np.float32)
        vy = np.log(valid["Sales"].to_numpy(dtype=np.float64)).astype(np.float32)
        return Dataset((tf.cats, tf.conts), ty, (vf.cats, vf.conts), vy, spec, extras)

    def build(self, spec: Spec, config: TrainConfig) -> nn.Module:
        assert isinstance(config, SalesConfig)
        cards = [len(spec["vocab"][c]) + 1 for c in spec["cat_names"]]
        lo, hi = spec["y_range"]
        return TabularModel(
            cards, len(spec["cont_names"]), config.layers, config.dropout, config.emb_dropout, (lo, hi), spec.get("y_mean")
        )

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(output, target.float())

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

    @torch.no_grad()
    def finalize(self, net: nn.Module, data: Dataset) -> None:
        """Give the unknown index of every embedding the average of the known rows (it is never trained)."""
        assert isinstance(net, TabularModel)
        for emb in net.embeds:
            emb.weight[0] = emb.weight[1:].mean(dim=0)

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
