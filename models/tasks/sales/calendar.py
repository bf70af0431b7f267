"""The sales calendar: days as numbers, date parts in numpy, and each store's holiday and promo days.

Days are int64 days since 1970-01-01 throughout. A store's event days travel in
the model's spec as runs of consecutive ISO dates.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Union

import numpy as np
import pandas as pd

EVENTS = ("StateHoliday", "SchoolHoliday", "Promo")
"""Per-store events whose days since and until are features (the course's elapsed columns)."""
Records = Union[pd.DataFrame, Mapping[str, Any]]
"""Store-day records: a DataFrame or a mapping of column name -> values (one per record)."""


def days_of(dates: pd.Series | pd.DatetimeIndex) -> np.ndarray:
    """Dates -> int64 days since 1970-01-01."""
    return np.asarray(pd.DatetimeIndex(dates).values.astype("datetime64[D]").astype(np.int64))


def runs_of(days: np.ndarray) -> list[list[str]]:
    """Sorted unique days -> runs of consecutive days as ``[first, last]`` ISO dates."""
    if len(days) == 0:
        return []
    breaks = np.flatnonzero(np.diff(days) != 1)
    starts = np.concatenate([[days[0]], days[breaks + 1]])
    ends = np.concatenate([days[breaks], [days[-1]]])
    iso = lambda d: str(np.datetime64(int(d), "D"))  # noqa: E731
    return [[iso(a), iso(b)] for a, b in zip(starts, ends)]


def days_in_runs(runs: list[list[str]]) -> np.ndarray:
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
    day = days_of(rows["Date"])
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
                tables.append(runs_of(days))
                counts.append(0)
            stores[str(int(s))] = index[key]
            counts[index[key]] += 1
        out[event] = {"tables": tables, "stores": stores, "default": int(np.argmax(counts)) if counts else 0}
    return out


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


def to_days(values: Any) -> np.ndarray:
    """Dates (``YYYY-MM-DD`` strings or datetimes) -> int64 days since 1970-01-01."""
    arr = np.asarray(values)
    if np.issubdtype(arr.dtype, np.datetime64):
        return arr.astype("datetime64[D]").astype(np.int64)
    try:
        return arr.astype("datetime64[D]").astype(np.int64)
    except (TypeError, ValueError):  # other spellings pandas understands
        return days_of(pd.DatetimeIndex(pd.to_datetime(pd.Series(arr))))


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
