"""Serving ``sales``: Rossmann-style records (rows of Kaggle's ``test.csv``) in, predicted sales out."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from models.inputs import InvalidInput
from models.serving import Endpoint, Limits, Prepared, Serving, check_index_range, per_item
from models.task import Spec
from models.tasks.sales.features import Preprocessor

CHEAP_RECORDS = 64
"""Requests with up to this many records are featurised on the event loop (numpy: well under a millisecond)."""
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
FIRST_YEAR, LAST_YEAR = 1900, 2200


def _calendar_date(text: str) -> str:
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a calendar date (YYYY-MM-DD)") from None
    if not FIRST_YEAR <= day.year <= LAST_YEAR:
        raise ValueError(f"{text!r} is outside the years {FIRST_YEAR}-{LAST_YEAR}")
    return text


class SalesRecord(BaseModel):
    """One store-day, shaped like a row of Kaggle's ``test.csv``."""

    model_config = ConfigDict(extra="ignore")

    Store: Annotated[int, Field(strict=True, ge=1, le=2**31 - 1, description="store id (an unknown store is served as an average store)")]
    Date: Annotated[
        str,
        Field(
            strict=True,
            pattern=r"^(19\d\d|2[01]\d\d|2200)-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$",
            description=f"the day, YYYY-MM-DD, a calendar date in the years {FIRST_YEAR}-{LAST_YEAR}",
        ),
        AfterValidator(_calendar_date),
    ]
    Open: Annotated[int, Field(strict=True, ge=0, le=1, description="1 when the store is open; a closed store sells 0")]
    Promo: Annotated[int, Field(strict=True, ge=0, le=1, description="1 on a promo day")]
    StateHoliday: Annotated[str, Field(strict=True, min_length=1, max_length=16, description='"0" (none), "a" public, "b" Easter, "c" Christmas')]
    SchoolHoliday: Annotated[int, Field(strict=True, ge=0, le=1, description="1 when schools are closed")]
    DayOfWeek: Annotated[int | None, Field(strict=True, ge=1, le=7, description="1 = Monday; optional, checked against Date")] = None
    Id: Annotated[int | None, Field(strict=True, description="optional, echoed back (test.csv's Id)")] = None


class SalesPrediction(BaseModel):
    Id: int | None = None
    Store: int
    Date: str
    sales: float = Field(description="predicted sales; 0 for a closed store")
    unknown: list[str] = Field(description="request fields whose value the model has not seen (served from the unknown index)")


class SalesResult(BaseModel):
    model_version: str
    predictions: list[SalesPrediction]


class SalesServing(Serving):
    task = "sales"
    unknown_fields = ("Store", "Date", "StateHoliday")
    shadow_measure = "relative_mad"
    canary_p99_ms = 500.0
    feedback = {"sales": "the store-day's true sales"}

    def __init__(self, spec: Spec, limits: Limits) -> None:
        super().__init__(spec, limits)
        self.prep = Preprocessor(spec)

    def endpoints(self) -> dict[str, Endpoint]:
        return {"sales": Endpoint(self.prepare, self.answer, cheap=lambda records: len(records) <= CHEAP_RECORDS)}

    def check_tensors(self, inputs: dict[str, np.ndarray]) -> None:
        cats = inputs["cats"]
        for j, name in enumerate(self.spec["cat_names"]):
            check_index_range(f"cats[:, {j}] ({name})", cats[:, j], len(self.spec["vocab"][name]) + 1)

    def examples(self, folder: Path) -> dict[str, dict[str, Any]]:
        store = int(min(self.spec["stores"], key=int))
        record = {"Store": store, "Date": self.spec["data_end"], "Open": 1, "Promo": 1, "StateHoliday": "0", "SchoolHoliday": 0}
        return {"sales": {"records": [SalesRecord(**record), SalesRecord(**{**record, "Store": 10**9, "Open": 0})]}}

    def prepare(self, records: list[SalesRecord]) -> Prepared:
        if not records:
            raise InvalidInput("empty", "records is empty; send at least one record")
        if len(records) > self.limits.max_records:
            raise InvalidInput("too_many", f"{len(records)} records; the limit is {self.limits.max_records} per request", status=413)
        for i, r in enumerate(records):
            weekday = date.fromisoformat(r.Date).isoweekday()
            if r.DayOfWeek is not None and r.DayOfWeek != weekday:
                raise InvalidInput(
                    "day_of_week_mismatch",
                    f"records[{i}].DayOfWeek is {r.DayOfWeek} but records[{i}].Date {r.Date} is a {WEEKDAYS[weekday - 1]} ({weekday}; 1 = Monday)",
                )
        columns = {
            "Store": np.asarray([r.Store for r in records], dtype=np.int64),
            "Date": np.asarray([r.Date for r in records]),
            "Promo": np.asarray([r.Promo for r in records], dtype=np.int64),
            "StateHoliday": np.asarray([r.StateHoliday for r in records]),
            "SchoolHoliday": np.asarray([r.SchoolHoliday for r in records], dtype=np.int64),
        }
        features = self.prep.transform(columns)
        return Prepared([(features.cats, features.conts)], context=(records, features.unknown), unknown=tuple(features.unknown_counts()))

    def answer(self, prepared: Prepared, outputs: list[np.ndarray], version: str) -> SalesResult:
        records, unknown = prepared.context
        sales = np.exp(outputs[0].astype(np.float64))
        return SalesResult(
            model_version=version,
            predictions=[
                SalesPrediction(Id=r.Id, Store=r.Store, Date=r.Date, sales=float(s) if r.Open else 0.0, unknown=u)
                for r, s, u in zip(records, sales, unknown)
            ],
        )

    def agreement(self, endpoint: str, champion: SalesResult, challenger: SalesResult) -> float | None:
        a = np.asarray([p.sales for p in champion.predictions])
        b = np.asarray([p.sales for p in challenger.predictions])
        return float(np.abs(a - b).sum() / max(float(np.abs(a).sum()), 1e-9)) if a.any() else None

    def column_names(self, name: str, width: int) -> list[str]:
        names = list(self.spec["cat_names"] if name == "cats" else self.spec["cont_names"] if name == "conts" else [])
        return names if len(names) == width else super().column_names(name, width)

    def outcome(self, endpoint: str, value: Any, request: dict[str, Any]) -> list[Any]:
        records = request.get("records") or []

        def check(sales: Any, i: int) -> float:
            if isinstance(sales, bool) or not isinstance(sales, (int, float)) or not 0 <= sales < 1e9:
                raise InvalidInput("bad_sales", f"outcome[{i}] = {sales!r} is not a sales figure (a number from 0)")
            if sales and not records[i].get("Open"):
                raise InvalidInput("bad_sales", f"outcome[{i}] = {sales!r}, but records[{i}] is a closed store-day, which sells 0")
            return float(sales)

        return per_item(value, len(request.get("records") or []), check)


SERVING = SalesServing
