"""Serving ``sentiment``: a list of texts in, a label and its probability per text out.

Each text is tokenised with the same code as training (:mod:`models.text`), cut
to the model's ``max_tokens`` (flagged ``truncated``), and the request's texts
are padded on the right to a common length rounded up to a multiple of the
spec's ``bucket``: requests of similar lengths then have the same shape, and
the micro-batcher runs them together in one model call. A model that runs its
rows alone (dynamic INT8) gets each text padded to its own bucket instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from models.inputs import InvalidInput
from models.maths import softmax
from models.serving import Arrays, Endpoint, Limits, Prepared, Serving, check_index_range, per_item
from models.task import Spec
from models.text import UNK_ID, Numericalizer, bucket_length, encode, pad_right


class TextPrediction(BaseModel):
    label: str
    probability: float = Field(description="the probability of this label")
    truncated: bool = Field(description="true when the text was longer than max_tokens and only its end was read")
    tokens: int = Field(description="tokens the model read, xxbos included")


class SentimentResult(BaseModel):
    model_version: str
    max_tokens: int
    predictions: list[TextPrediction]


class SentimentServing(Serving):
    task = "sentiment"
    shadow_measure = "top1"
    canary_p99_ms = 1000.0
    feedback = {"sentiment": "the true label of each text"}

    def __init__(self, spec: Spec, limits: Limits) -> None:
        super().__init__(spec, limits)
        self.numericalizer = Numericalizer(spec["vocab"])
        self.labels: list[str] = list(spec["labels"])
        self.max_tokens = int(spec["max_tokens"])
        self.bucket = int(spec.get("bucket", 32))

    def endpoints(self) -> dict[str, Endpoint]:
        return {"sentiment": Endpoint(self.prepare, self.answer)}

    def prepare(self, texts: list[Any]) -> Prepared:
        if not isinstance(texts, list) or not texts:
            raise InvalidInput("empty", "texts is empty; send a list of at least one text")
        if len(texts) > self.limits.max_texts:
            raise InvalidInput("too_many", f"{len(texts)} texts; the limit is {self.limits.max_texts} per request (ZOO_MAX_TEXTS)", status=413)
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise InvalidInput("not_text", f"texts[{i}] is {type(text).__name__}, not a string")
            if not text.strip():
                raise InvalidInput("empty_text", f"texts[{i}] is empty or only white space")
        encoded = [encode(text, self.numericalizer, self.max_tokens) for text in texts]
        ids = [e[0] for e in encoded]
        cut = [e[1] for e in encoded]
        if self.rows_alone:  # each text on its own, padded to its own bucket: its answer depends on it alone
            groups = [pad_right([x], bucket_length(len(x), self.bucket, self.max_tokens)) for x in ids]
            return Prepared(groups, context=cut, items=len(ids))
        length = bucket_length(max(len(x) for x in ids), self.bucket, self.max_tokens)
        return Prepared([pad_right(ids, length)], context=cut)

    def check_tensors(self, inputs: dict[str, np.ndarray]) -> None:
        check_index_range("tokens", inputs["tokens"], len(self.numericalizer))

    def examples(self, folder: Path) -> dict[str, dict[str, Any]]:
        return {"sentiment": {"texts": ["One of the best films I have seen. Loved it!", "Dull, long and badly acted."]}}

    def answer(self, prepared: Prepared, outputs: list[np.ndarray], version: str) -> SentimentResult:
        probs = softmax(np.concatenate(outputs).astype(np.float64))
        best = probs.argmax(axis=1)
        lengths = np.concatenate([group[1] for group in prepared.inputs])
        return SentimentResult(
            model_version=version,
            max_tokens=self.max_tokens,
            predictions=[
                TextPrediction(label=self.labels[k], probability=float(p[k]), truncated=cut, tokens=int(n))
                for k, p, cut, n in zip(best, probs, prepared.context, lengths)
            ],
        )

    def agreement(self, endpoint: str, champion: SentimentResult, challenger: SentimentResult) -> float | None:
        return float(np.mean([a.label == b.label for a, b in zip(champion.predictions, challenger.predictions)]))

    def observe(self, inputs: Arrays, names: Sequence[str]) -> dict[str, np.ndarray]:
        """A text's length in tokens and its share of unknown tokens (``xxunk``)."""
        tokens, lengths = np.asarray(inputs[0]), np.asarray(inputs[1])
        read = np.arange(tokens.shape[1])[None, :] < lengths[:, None]
        unknown = ((tokens == UNK_ID) & read).sum(axis=1) / np.maximum(lengths, 1)
        return {"length": lengths.astype(np.float64), "unknown_rate": unknown.astype(np.float64)}

    def categorical(self, names: Sequence[str], inputs: Arrays) -> frozenset[str]:
        return frozenset()

    def outcome(self, endpoint: str, value: Any, request: dict[str, Any]) -> list[Any]:
        def check(label: Any, i: int) -> str:
            if label not in self.labels:
                raise InvalidInput("unknown_label", f"outcome {label!r} is not a label of this model: {', '.join(self.labels)}")
            return str(label)

        return per_item(value, len(request.get("texts") or []), check)


SERVING = SentimentServing
