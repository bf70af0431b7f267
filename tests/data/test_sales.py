"""``sales``: the synthetic Rossmann generator, its validation, and the features on hand-made cases."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fakes import write_rossmann_like

from models.registry import get_task
from models.tasks.sales import prepare_rows, rmspe
from models.tasks.sales.calendar import DateParts, elapsed, to_days
from models.tasks.sales.features import CAT_NAMES, CONT_NAMES, NA, Preprocessor, fit_spec
from models.tasks.sales.schema import STORE_COLUMNS, TRAIN_COLUMNS, read_tables
from models.tasks.sales.synthetic import generate_rossmann, write_rossmann
from pipelines import ingest

TASK = get_task("sales")


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


# --------------------------------------------------------------------------- generator


def test_the_generator_gives_the_same_bytes_every_time_and_in_every_process(tmp_path: Path) -> None:
    a = write_rossmann(tmp_path / "a", n_stores=5, start="2015-01-01", end="2015-03-31", seed=3)
    b = write_rossmann(tmp_path / "b", n_stores=5, start="2015-01-01", end="2015-03-31", seed=3)
    assert digests(a) == digests(b)
    code = (
        "import sys; from pathlib import Path; from models.tasks.sales.synthetic import write_rossmann;"
        "write_rossmann(Path(sys.argv[1]), n_stores=5, start='2015-01-01', end='2015-03-31', seed=3)"
    )
    env_seed = {"PYTHONHASHSEED": "123"}
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "c")], check=True, env={**_env(), **env_seed})
    assert digests(tmp_path / "c") == digests(a)
    other = write_rossmann(tmp_path / "d", n_stores=5, start="2015-01-01", end="2015-03-31", seed=4)
    assert digests(other)["train.csv"] != digests(a)["train.csv"]


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k != "PYTHONHASHSEED"}


def test_the_sample_is_in_kaggles_schema_and_says_it_is_synthetic(tmp_path: Path) -> None:
    folder = write_rossmann(tmp_path / "rossmann_sample")
    assert "SYNTHETIC" in (folder / "README.txt").read_text()
    header = (folder / "train.csv").read_text().splitlines()[0]
    assert header.split(",") == TRAIN_COLUMNS
    assert (folder / "store.csv").read_text().splitlines()[0].split(",") == STORE_COLUMNS
    train, store = read_tables(folder)
    assert TASK.validate(tmp_path, TASK.config("demo")) == []
    assert train["Store"].nunique() == 50 and len(store) == 50
    dates = pd.to_datetime(train["Date"])
    assert dates.min() == pd.Timestamp("2013-01-01") and dates.max() == pd.Timestamp("2015-07-31")
    assert dates.iloc[0] == dates.max()  # Kaggle's order: newest day first
    assert set(train["StateHoliday"]) == {"0", "a", "b", "c"}
    assert set(train["Open"]) == {0, 1} and (train.loc[train["Open"] == 0, "Sales"] == 0).all()
    assert 0.3 < train["Promo"].mean() < 0.45 and 0.05 < train["SchoolHoliday"].mean() < 0.4
    assert store["CompetitionDistance"].isna().any() and store["PromoInterval"].isna().any()
    assert set(store["PromoInterval"].dropna()) <= {"Jan,Apr,Jul,Oct", "Feb,May,Aug,Nov", "Mar,Jun,Sept,Dec"}
    # Something to learn: promo days sell more than the same store's other open days.
    open_ = train[train["Open"] == 1]
    lift = open_.groupby(["Store", "Promo"])["Sales"].median().unstack()
    assert (lift[1] > lift[0] * 1.1).mean() > 0.9


def test_ingest_generates_the_sample_without_a_mirror_or_network(tmp_path: Path) -> None:
    target = ingest.fetch("rossmann_sample", tmp_path / "data", mirror=None)
    assert {p.name for p in target.iterdir()} == {"train.csv", "store.csv", "README.txt"}
    again = ingest.fetch("rossmann_sample", tmp_path / "data2", mirror=None)
    assert digests(target) == digests(again)


def test_ingest_copies_real_files_from_zoo_sales_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = write_rossmann_like(tmp_path / "kaggle", stores=3)
    (real / "README.txt").unlink()
    monkeypatch.setenv("ZOO_SALES_DATA", str(real))
    target = ingest.fetch("rossmann_sample", tmp_path / "data", mirror=None)
    assert digests(target) == digests(real)
    monkeypatch.setenv("ZOO_SALES_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="ZOO_SALES_DATA"):
        ingest.fetch("rossmann_sample", tmp_path / "data3", mirror=None)
    assert not (tmp_path / "data3" / "rossmann_sample").exists()


# --------------------------------------------------------------------------- validation


def _edit(folder: Path, file: str, change) -> None:
    df = pd.read_csv(folder / file, dtype=str, keep_default_na=False)
    change(df)
    df.to_csv(folder / file, index=False)


@pytest.mark.parametrize(
    "file, change, expected",
    [
        ("train.csv", lambda df: df.loc.__setitem__((0, "Open"), "2"), "Open: isin"),
        ("train.csv", lambda df: df.loc.__setitem__((0, "StateHoliday"), "x"), "StateHoliday: isin"),
        ("train.csv", lambda df: df.loc.__setitem__((0, "Sales"), ""), "Sales: not_nullable"),
        ("train.csv", lambda df: df.loc.__setitem__((0, "Sales"), "-5"), "Sales: greater_than_or_equal_to(0)"),
        ("train.csv", lambda df: df.loc.__setitem__((0, "Date"), "31/07/2015"), "Date: str_matches"),
        ("train.csv", lambda df: df.loc.__setitem__((0, "DayOfWeek"), "1" if df.loc[0, "DayOfWeek"] != "1" else "2"), "DayOfWeek is not the weekday"),
        ("train.csv", lambda df: df.loc.__setitem__((df.index[df["Open"] == "0"][0], "Sales"), "100"), "a closed day has sales"),
        ("train.csv", lambda df: df.loc.__setitem__((1, "Store"), df.loc[0, "Store"]), "appears twice"),
        ("train.csv", lambda df: df.__setitem__("Extra", "1"), "column_in_schema"),
        ("store.csv", lambda df: df.loc.__setitem__((0, "StoreType"), "e"), "StoreType: isin"),
        ("store.csv", lambda df: df.loc.__setitem__((0, "PromoInterval"), "Jan,Feb"), "PromoInterval: isin"),
        ("store.csv", lambda df: df.loc.__setitem__((0, "CompetitionOpenSinceMonth"), "13"), "CompetitionOpenSinceMonth: in_range"),
        ("store.csv", lambda df: df.drop(index=0, inplace=True), "stores not in store.csv"),
    ],
)
def test_validation_reports_bad_data(tmp_path: Path, file: str, change, expected: str) -> None:
    folder = write_rossmann_like(tmp_path)
    _edit(folder, file, change)
    problems = TASK.validate(tmp_path, TASK.config("tiny"))
    assert any(expected in p for p in problems), problems


def test_validation_reports_missing_files_and_too_little_history(tmp_path: Path) -> None:
    assert any("no train.csv" in p for p in TASK.validate(tmp_path, TASK.config("tiny")))
    write_rossmann(tmp_path / "rossmann_sample", n_stores=5, start="2015-06-01", end="2015-07-01")
    assert any("validation weeks" in p for p in TASK.validate(tmp_path, TASK.config("tiny")))


# --------------------------------------------------------------------------- features


def handmade() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two stores over January-February 2015: holidays on Jan 1 and Jan 6 (store 1 only), promo Mon-Fri of odd weeks."""
    dates = pd.date_range("2015-01-01", "2015-02-28", freq="D")
    rows = []
    for store in (1, 2):
        for d in dates:
            holiday = "a" if d.strftime("%m-%d") == "01-01" or (store == 1 and d.strftime("%m-%d") == "01-06") else "0"
            promo = int(d.isocalendar().week % 2 == 1 and d.dayofweek < 5)
            open_ = int(holiday == "0" and d.dayofweek < 6)
            rows.append([store, d.dayofweek + 1, d.strftime("%Y-%m-%d"), 5000 * open_, 500 * open_, open_, promo, holiday, 0])
    train = pd.DataFrame(rows, columns=TRAIN_COLUMNS)
    store = pd.DataFrame(
        [
            [1, "a", "a", 1270.0, 9.0, 2008.0, 0, np.nan, np.nan, None],
            [2, "c", "c", np.nan, np.nan, np.nan, 1, 5.0, 2014.0, "Jan,Apr,Jul,Oct"],
        ],
        columns=STORE_COLUMNS,
    )
    return train, store


@pytest.fixture(scope="module")
def fitted() -> Preprocessor:
    train, store = handmade()
    rows = prepare_rows(train)
    spec, _ = fit_spec(rows, store, rows[rows["Open"] == 1], 60)
    return Preprocessor(json.loads(json.dumps(spec)))  # as it travels: through JSON


def record(store: int, day: str, promo: int = 0, holiday: str = "0", school: int = 0) -> dict:
    return {"Store": store, "Date": day, "Promo": promo, "StateHoliday": holiday, "SchoolHoliday": school}


def test_days_since_and_until_a_holiday_come_from_the_store_calendar(fitted: Preprocessor) -> None:
    raw = fitted.raw(pd.DataFrame([record(1, "2015-01-03"), record(2, "2015-01-03"), record(1, "2015-01-06", holiday="a")]))
    assert raw["AfterStateHoliday"].tolist() == [2, 2, 0]
    assert raw["BeforeStateHoliday"].tolist()[0] == 3  # store 1: Jan 6
    assert np.isnan(raw["BeforeStateHoliday"].tolist()[1])  # store 2: no later holiday known
    assert raw["BeforeStateHoliday_na"].tolist() == ["False", "True", "False"]
    assert raw["BeforeStateHoliday"].tolist()[2] == 0


def test_elapsed_days_are_capped_and_the_records_own_flag_wins() -> None:
    events = np.array([0, 100])
    after, before = elapsed(events, np.array([1, 50, 99, 120, 7]), np.array([False, False, False, False, True]), cap=60)
    assert after.tolist() == [1, 50, 60, 20, 0]
    assert before[:3].tolist() == [60, 50, 1] and np.isnan(before[3]) and before[4] == 0


def test_events_in_the_request_extend_the_calendar(fitted: Preprocessor) -> None:
    future = [record(1, "2015-03-10"), record(1, "2015-03-16", promo=1)]
    raw = fitted.raw(pd.DataFrame(future))
    assert raw["BeforePromo"].tolist() == [6, 0]
    alone = fitted.raw(pd.DataFrame(future[:1]))
    assert np.isnan(alone["BeforePromo"].iloc[0]) and alone["BeforePromo_na"].iloc[0] == "True"


def test_date_parts_and_start_and_end_flags(fitted: Preprocessor) -> None:
    days = ["2015-01-31", "2015-03-31", "2015-12-31", "2015-01-01", "2015-04-01", "2015-02-14"]
    raw = fitted.raw(pd.DataFrame([record(1, d) for d in days]))
    assert raw["Is_month_end"].tolist() == ["True", "True", "True", "False", "False", "False"]
    assert raw["Is_quarter_end"].tolist() == ["False", "True", "True", "False", "False", "False"]
    assert raw["Is_year_end"].tolist() == ["False", "False", "True", "False", "False", "False"]
    assert raw["Is_month_start"].tolist() == ["False", "False", "False", "True", "True", "False"]
    assert raw["Is_quarter_start"].tolist() == ["False", "False", "False", "True", "True", "False"]
    assert raw["Is_year_start"].tolist() == ["False", "False", "False", "True", "False", "False"]
    assert raw["Year"].tolist()[0] == "2015" and raw["Month"].tolist()[1] == "3" and raw["Day"].tolist()[5] == "14"
    assert raw["DayOfWeek"].tolist()[5] == "6" and raw["Week"].tolist()[5] == "7"  # a Saturday in ISO week 7


def test_store_metadata_is_joined_with_missing_value_flags(fitted: Preprocessor) -> None:
    raw = fitted.raw(pd.DataFrame([record(1, "2015-02-10"), record(2, "2015-02-10")]))
    assert raw["StoreType"].tolist() == ["a", "c"]
    assert raw["CompetitionDistance"].iloc[0] == pytest.approx(np.log1p(1270))
    assert np.isnan(raw["CompetitionDistance"].iloc[1])
    assert raw["CompetitionDistance_na"].tolist() == ["False", "True"]
    assert raw["CompetitionMonthsOpen"].tolist() == ["24", NA]  # since 2008: capped at 24 months
    assert raw["PromoInterval"].tolist() == [NA, "Jan,Apr,Jul,Oct"]
    assert raw["Promo2Weeks"].tolist()[1] == "25"  # since week 5 of 2014: capped at 25
    assert raw["IsPromo2Month"].tolist() == ["False", "False"]  # February is not in Jan,Apr,Jul,Oct
    encoded = fitted.encode(raw)
    j = CONT_NAMES.index("CompetitionDistance")
    spec = fitted.spec
    median = (spec["medians"]["CompetitionDistance"] - spec["means"]["CompetitionDistance"]) / spec["stds"]["CompetitionDistance"]
    assert encoded.conts[1, j] == pytest.approx(median, abs=1e-6)  # missing -> the training median, normalised


def test_unknown_categories_map_to_index_zero_and_are_reported(fitted: Preprocessor) -> None:
    frame = pd.DataFrame([record(1, "2015-02-10"), record(999, "2015-02-10"), record(1, "2015-02-10", holiday="z"), record(1, "2030-02-10")])
    f = fitted.transform(frame)
    col = {name: j for j, name in enumerate(CAT_NAMES)}
    assert f.unknown == [[], ["Store"], ["StateHoliday"], ["Date"]]
    assert f.cats[0].min() >= 1  # a known record uses no unknown index
    assert f.cats[1, col["Store"]] == 0 and f.cats[1, col["StoreType"]] == 0 and f.cats[1, col["PromoInterval"]] == 0
    assert f.cats[2, col["StateHoliday"]] == 0 and f.cats[3, col["Year"]] == 0
    assert f.unknown_counts() == {"Store": 1, "StateHoliday": 1, "Date": 1}
    assert np.isfinite(f.conts).all() and f.cats.dtype == np.int64 and f.conts.dtype == np.float32


# --------------------------------------------------------------------------- task


def test_training_and_serving_compute_the_same_features(mirror: Path) -> None:
    cfg = TASK.config("tiny")
    data = TASK.load(mirror, cfg)
    prep = Preprocessor(json.loads(json.dumps(data.spec)))
    valid = data.extras["valid"]
    frame = pd.read_csv(mirror / "rossmann_sample" / "train.csv", dtype={"StateHoliday": str})
    frame["Date"] = pd.to_datetime(frame["Date"])
    rows = frame.merge(valid[["Store", "Date"]], on=["Store", "Date"])
    rows = valid[["Store", "Date"]].merge(rows, on=["Store", "Date"], how="left")  # in the validation order
    rows["Date"] = rows["Date"].dt.strftime("%Y-%m-%d")  # as a client sends it
    f = prep.transform(rows[["Store", "Date", "Promo", "StateHoliday", "SchoolHoliday"]])
    assert np.array_equal(f.cats, data.valid_x[0])
    assert np.allclose(f.conts, data.valid_x[1], atol=1e-6)


def test_split_is_by_time_on_open_days(mirror: Path) -> None:
    cfg = TASK.config("tiny", limit=None)
    data = TASK.load(mirror, cfg)
    train, valid = data.extras["train"], data.extras["valid"]
    assert train["Date"].max() < valid["Date"].min()
    assert (valid["Date"].max() - valid["Date"].min()).days == 41  # the last 6 weeks
    assert (train["Sales"] > 0).all() and (valid["Sales"] > 0).all()
    assert np.allclose(np.exp(data.valid_y), valid["Sales"], rtol=1e-6)


def test_baseline_is_the_median_of_the_same_store_and_weekday(mirror: Path) -> None:
    data = TASK.load(mirror, TASK.config("tiny", limit=None))
    train, valid = data.extras["train"], data.extras["valid"]
    row = valid.iloc[0]
    same = train[(train["Store"] == row["Store"]) & (train["DayOfWeek"] == row["DayOfWeek"])]["Sales"]
    medians = train.groupby(["Store", "DayOfWeek"])["Sales"].median()
    pred = [medians.get((s, d), np.nan) for s, d in zip(valid["Store"], valid["DayOfWeek"])]
    assert medians[(row["Store"], row["DayOfWeek"])] == same.median()
    assert TASK.baseline(data) == pytest.approx(rmspe(np.asarray(pred), valid["Sales"].to_numpy()))
    assert rmspe(np.array([110.0, 90.0, 5.0]), np.array([100.0, 100.0, 0.0])) == pytest.approx(0.1)  # closed days ignored


def test_generated_sample_defaults() -> None:
    train, store = generate_rossmann(n_stores=3, start="2015-01-01", end="2015-01-31", seed=1)
    assert list(train.columns) == TRAIN_COLUMNS and list(store.columns) == STORE_COLUMNS
    assert len(train) == 3 * 31


def test_numpy_date_parts_match_the_calendar() -> None:
    days = pd.date_range("1900-01-01", "2200-12-31", freq="37D").append(pd.date_range("2014-12-20", "2016-01-10"))
    parts = DateParts.of(to_days(days.strftime("%Y-%m-%d").to_numpy()))
    iso = days.isocalendar()
    assert parts.year.tolist() == days.year.tolist() and parts.month.tolist() == days.month.tolist()
    assert parts.day.tolist() == days.day.tolist() and parts.weekday.tolist() == (days.dayofweek + 1).tolist()
    assert parts.iso_week.tolist() == iso.week.astype(int).tolist()
    flags = parts.flags(to_days(days.to_numpy()))
    for name, attr in [("Is_month_end", "is_month_end"), ("Is_quarter_start", "is_quarter_start"), ("Is_year_end", "is_year_end")]:
        assert flags[name].tolist() == list(getattr(days, attr)), name


def test_column_arrays_and_a_dataframe_give_the_same_features(fitted: Preprocessor) -> None:
    rows = [record(1, "2015-02-10", promo=1), record(7, "2015-03-01"), record(2, "2016-12-31", holiday="c", school=1)]
    frame = pd.DataFrame(rows)
    columns = {k: np.asarray([r[k] for r in rows]) for k in rows[0]}
    a, b = fitted.transform(frame), fitted.transform(columns)
    assert np.array_equal(a.cats, b.cats) and np.array_equal(a.conts, b.conts) and a.unknown == b.unknown == [[], ["Store", "Date"], ["Date", "StateHoliday"]]


def test_captured_records_with_feedback_become_training_rows_the_schema_accepts(tmp_path: Path) -> None:
    from models.capture import Captured

    folder = write_rossmann_like(tmp_path)
    train, _ = read_tables(folder)
    first = train.iloc[0]
    last_day = pd.to_datetime(train["Date"]).max()
    new_day = str((last_day + pd.Timedelta(days=1)).date())
    base = {"Open": 1, "Promo": 1, "StateHoliday": "0", "SchoolHoliday": 0}
    records = [
        {**base, "Store": int(first["Store"]), "Date": new_day},  # new: becomes a row
        {**base, "Store": int(first["Store"]), "Date": str(first["Date"])},  # already in the data: the data's row wins
        {**base, "Store": 10**6, "Date": new_day},  # a store store.csv does not have
    ]
    captured = Captured({"request_id": "a" * 32, "endpoint": "sales", "request": {"records": records}}, tmp_path)
    assert TASK.absorb(tmp_path, [(captured, [1234.0, 99.0, 5.0])]) == 1
    assert TASK.validate(tmp_path, TASK.config("tiny")) == []
    after, _ = read_tables(folder)
    added = after[after["Date"] == new_day]
    assert len(after) == len(train) + 1 and added["Sales"].tolist() == [1234] and added["Customers"].isna().all()
    assert int(after[(after["Store"] == first["Store"]) & (after["Date"] == first["Date"])]["Sales"].iloc[0]) == int(first["Sales"])
    assert len(TASK.load(tmp_path, TASK.config("tiny")).train_y)  # and the loader reads it
