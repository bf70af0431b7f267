"""The ``sentiment`` API: a list of texts in, a label and its probability per text out.

Each text is tokenised with the same code as training (``models.text``), cut
to the model's ``max_tokens`` (flagged ``truncated``), and the request's texts
are padded on the right to a common length rounded up to a multiple of the
spec's ``bucket``: requests of similar lengths then have the same shape, and
the micro-batcher runs them together in one model call.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import bentoml
import numpy as np
from pydantic import BaseModel, Field

from models.inputs import InvalidInput
from models.onnx_model import OnnxModel
from models.text import Numericalizer, bucket_length, encode, pad_right, softmax
from services.base import TaskRunner, ZooService, env_int, service_options, with_middleware

DEFAULT_MAX_TEXTS = 64
"""Texts per request unless ``ZOO_MAX_TEXTS`` says otherwise."""


class TextPrediction(BaseModel):
    label: str
    probability: float = Field(description="the probability of this label")
    truncated: bool = Field(description="true when the text was longer than max_tokens and only its end was read")
    tokens: int = Field(description="tokens the model read, xxbos included")


class SentimentResult(BaseModel):
    model_version: str
    max_tokens: int
    predictions: list[TextPrediction]


class SentimentRunner(TaskRunner):
    task = "sentiment"

    def __init__(self, model: OnnxModel) -> None:
        super().__init__(model)
        self.numericalizer = Numericalizer(self.spec["vocab"])
        self.labels: list[str] = list(self.spec["labels"])
        self.max_tokens = int(self.spec["max_tokens"])
        self.bucket = int(self.spec.get("bucket", 32))

    def _prepare(self, texts: list[Any]) -> tuple[np.ndarray, np.ndarray, list[bool]]:
        limit = env_int("ZOO_MAX_TEXTS", DEFAULT_MAX_TEXTS)
        if not isinstance(texts, list) or not texts:
            raise InvalidInput("empty", "texts is empty; send a list of at least one text")
        if len(texts) > limit:
            raise InvalidInput("too_many", f"{len(texts)} texts; the limit is {limit} per request (ZOO_MAX_TEXTS)", status=413)
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise InvalidInput("not_text", f"texts[{i}] is {type(text).__name__}, not a string")
            if not text.strip():
                raise InvalidInput("empty_text", f"texts[{i}] is empty or only white space")
        encoded = [encode(text, self.numericalizer, self.max_tokens) for text in texts]
        ids = [e[0] for e in encoded]
        length = bucket_length(max(len(x) for x in ids), self.bucket, self.max_tokens)
        tokens, lengths = pad_right(ids, length)
        return tokens, lengths, [e[1] for e in encoded]

    async def sentiment(self, texts: list[Any]) -> SentimentResult:
        tokens, lengths, truncated = await asyncio.to_thread(self._prepare, texts)
        probs = softmax(np.asarray(await self.run(tokens, lengths), dtype=np.float64))
        best = probs.argmax(axis=1)
        return SentimentResult(
            model_version=self.version,
            max_tokens=self.max_tokens,
            predictions=[
                TextPrediction(label=self.labels[k], probability=float(p[k]), truncated=cut, tokens=int(n))
                for k, p, cut, n in zip(best, probs, truncated, lengths)
            ],
        )


class SentimentAPI:
    """Mixin holding the ``/sentiment`` endpoint."""

    runner_types = {"sentiment": SentimentRunner}
    routes = {"/sentiment": "sentiment"}

    @bentoml.api(route="/sentiment")
    async def sentiment(
        self,
        texts: Annotated[list[str], Field(description="texts to classify (movie reviews), at most ZOO_MAX_TEXTS (default 64)")],
        ctx: bentoml.Context,
    ) -> SentimentResult:
        """The sentiment of each text: its label and probability; long texts are cut to their last tokens and flagged."""
        return await self.serve("sentiment", ctx, lambda r: r.sentiment(texts))  # type: ignore[attr-defined]


@with_middleware
@bentoml.service(name="sentiment", **service_options())
class Sentiment(SentimentAPI, ZooService):
    served = ("sentiment",)
