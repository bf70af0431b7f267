"""The Kaggle Rossmann schema: ``train.csv`` and ``store.csv`` as read, and their declared checks (pandera)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

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
            # not a model input; empty on a store-day added from captured traffic (its feedback is the sales figure)
            "Customers": pa.Column("Int64", pa.Check.ge(0), nullable=True, coerce=True),
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


def problems_of(exc: Exception, file: str) -> list[str]:
    cases = exc.failure_cases  # type: ignore[attr-defined]
    return [
        f"{file}: {row.column if isinstance(row.column, str) else 'table'}: {row.check} failed"
        + (f" (e.g. {row.failure_case!r})" if row.failure_case is not None else "")
        for row in cases.drop_duplicates(["column", "check"]).itertuples()
    ]
