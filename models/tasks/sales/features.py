"""The sales features: Kaggle's records -> the course's features -> model inputs, and the spec they are fitted into.

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
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np
import pandas as pd

from models.task import Spec
from models.tasks.sales.calendar import EVENTS, DateParts, Records, build_calendars, days_in_runs, elapsed, event_flags, to_days
from models.tasks.sales.schema import MONTH_ABBR

NA = "#na#"
"""The category key of a missing value (a known category when training saw it)."""

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
                "tables": [days_in_runs(t) for t in cal["tables"]],
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


def fit_spec(all_rows: pd.DataFrame, store: pd.DataFrame, train_rows: pd.DataFrame, elapsed_cap: int) -> tuple[Spec, pd.DataFrame]:
    """Fit the spec: calendars from every row, vocabularies and statistics from the training rows.

    Returns the spec and the training rows' raw features.
    """
    spec: Spec = {
        "elapsed_cap": elapsed_cap,
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
