"""All task APIs on one port: every task with a champion (or those in ``ZOO_TASKS``)."""

from __future__ import annotations

import bentoml

from services.base import ZooService, service_options, with_middleware
from services.classify import ClassifyAPI
from services.recommend import RecommendAPI
from services.segment import SegmentAPI
from services.superres import SuperresAPI
from services.sales import SalesAPI
from services.sentiment import SentimentAPI


@with_middleware
@bentoml.service(name="zoo", **service_options())
class Zoo(ClassifyAPI, RecommendAPI, SalesAPI, SegmentAPI, SentimentAPI, SuperresAPI, ZooService):
    """Serves whichever tasks have a champion; the other APIs answer 503."""
