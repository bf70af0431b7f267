"""The ``sales`` API: Rossmann-style records (Kaggle's ``test.csv`` rows) in, predicted sales out."""

from __future__ import annotations

from typing import Annotated

import bentoml
from pydantic import Field

from models.tasks.sales.serving import SalesRecord, SalesResult
from services.base import ZooService
from services.compose import single_task_service


class API(ZooService, task="sales"):
    @bentoml.api(route="/sales")
    async def sales(
        self,
        records: Annotated[list[SalesRecord], Field(min_length=1, description="store-days to predict, like rows of Kaggle's test.csv; at least one, at most ZOO_MAX_RECORDS (default 10,000)")],
        ctx: bentoml.Context,
    ) -> SalesResult:
        """Predicted sales for each record (0 when the store is closed).

        The store table and the holiday and promo calendars come with the model;
        events in the records themselves (e.g. a store's coming promo days) are
        added to the calendars. Unknown stores, dates or holiday codes are served
        from the unknown index and listed in each prediction's ``unknown``.
        """
        return await self.infer(ctx, "sales", records=records)


Service = single_task_service(API)
