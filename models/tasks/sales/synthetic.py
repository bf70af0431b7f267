"""A synthetic Rossmann sample in Kaggle's schema, the same bytes for the same seed.

Kaggle's data is 38 MB and behind a login, so ``zoo data ingest`` generates this
sample (:func:`write_rossmann`) unless ``ZOO_SALES_DATA`` points at the real files.
"""

from __future__ import annotations

import math
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from models.tasks.sales.schema import MONTH_ABBR, PROMO_INTERVALS


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
        "SYNTHETIC DATA. Generated by course-zoo (models/tasks/sales/synthetic.py, generate_rossmann) in the schema of\n"
        "Kaggle's Rossmann Store Sales train.csv and store.csv; it is not Rossmann's data.\n"
        f"{n_stores} stores, {start} to {end}, seed {seed}.\n",
        encoding="utf-8",
    )
    return folder
