"""The ``sales`` API: Rossmann-style records (Kaggle's ``test.csv`` rows) in, predicted sales out."""

from __future__ import annotations

import asyncio
from datetime import date
from typing import Annotated

import bentoml
import numpy as np
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from models.inputs import InvalidInput
from models.onnx_model import OnnxModel
from models.tasks.sales import Preprocessor
from services.base import TaskRunner, ZooService, env_int, service_options, with_middleware
from services.metrics import zoo_metrics

UNKNOWN_FIELDS = ("Store", "Date", "StateHoliday")
"""Request fields whose values can be unknown to a model (served from the unknown index, counted)."""
INLINE_RECORDS = 64
"""Requests with up to this many records are featurised on the event loop."""
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def _calendar_date(text: str) -> str:
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a calendar date (YYYY-MM-DD)") from None
    if not 1900 <= day.year <= 2200:
        raise ValueError(f"{text!r} is outside the years 1900-2200")
    return text


Flag = Annotated[int, Field(strict=True, ge=0, le=1)]


class SalesRecord(BaseModel):
    """One store-day, shaped like a row of Kaggle's ``test.csv``."""

    model_config = ConfigDict(extra="ignore")

    Store: Annotated[int, Field(strict=True, ge=1, le=2**31 - 1, description="store id (an unknown store is served as an average store)")]
    Date: Annotated[
        str,
        Field(strict=True, pattern=r"^\d{4}-\d{2}-\d{2}$", description="the day, YYYY-MM-DD"),
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


class SalesRunner(TaskRunner):
    task = "sales"

    def __init__(self, model: OnnxModel) -> None:
        super().__init__(model)
        self.prep = Preprocessor(self.spec)
        for field in UNKNOWN_FIELDS:  # exported at 0 from the start
            zoo_metrics().unknown_inputs.labels(self.task, field)

    @staticmethod
    def _check(records: list[SalesRecord]) -> None:
        limit = env_int("ZOO_MAX_RECORDS", 10_000)
        if not records:
            raise InvalidInput("empty", "records is empty; send at least one record")
        if len(records) > limit:
            raise InvalidInput("too_many", f"{len(records)} records; the limit is {limit} per request", status=413)
        for i, r in enumerate(records):
            weekday = date.fromisoformat(r.Date).isoweekday()
            if r.DayOfWeek is not None and r.DayOfWeek != weekday:
                raise InvalidInput(
                    "day_of_week_mismatch",
                    f"records[{i}].DayOfWeek is {r.DayOfWeek} but records[{i}].Date {r.Date} is a {WEEKDAYS[weekday - 1]} ({weekday}; 1 = Monday)",
                )

    async def sales(self, records: list[SalesRecord]) -> SalesResult:
        self._check(records)
        columns = {
            "Store": np.asarray([r.Store for r in records], dtype=np.int64),
            "Date": np.asarray([r.Date for r in records]),
            "Promo": np.asarray([r.Promo for r in records], dtype=np.int64),
            "StateHoliday": np.asarray([r.StateHoliday for r in records]),
            "SchoolHoliday": np.asarray([r.SchoolHoliday for r in records], dtype=np.int64),
        }
        # Tuned in issue 6: a few records take well under a millisecond (numpy only), less than the
        # hop to a worker thread; larger requests are featurised off the event loop.
        if len(records) <= INLINE_RECORDS:
            features = self.prep.transform(columns)
        else:
            features = await asyncio.to_thread(self.prep.transform, columns)
        for field in features.unknown_counts():  # one per request and field, as the other tasks count
            zoo_metrics().unknown_inputs.labels(self.task, field).inc()
        log_sales = await self.run(features.cats, features.conts)
        sales = np.exp(log_sales.astype(np.float64))
        return SalesResult(
            model_version=self.version,
            predictions=[
                SalesPrediction(Id=r.Id, Store=r.Store, Date=r.Date, sales=float(s) if r.Open else 0.0, unknown=u)
                for r, s, u in zip(records, sales, features.unknown)
            ],
        )


class SalesAPI:
    """Mixin holding the ``/sales`` endpoint."""

    runner_types = {"sales": SalesRunner}
    routes = {"/sales": "sales"}

    @bentoml.api(route="/sales")
    async def sales(
        self,
        records: Annotated[list[SalesRecord], Field(description="store-days to predict, like rows of Kaggle's test.csv")],
        ctx: bentoml.Context,
    ) -> SalesResult:
        """Predicted sales for each record (0 when the store is closed).

        The store table and the holiday and promo calendars come with the model;
        events in the records themselves (e.g. a store's coming promo days) are
        added to the calendars. Unknown stores, dates or holiday codes are served
        from the unknown index and listed in each prediction's ``unknown``.
        """
        return await self.serve("sales", ctx, lambda r: r.sales(records))  # type: ignore[attr-defined]


@with_middleware
@bentoml.service(name="sales", **service_options())
class Sales(SalesAPI, ZooService):
    served = ("sales",)
