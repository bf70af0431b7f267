"""Serving ``classify``: an image in, the ``k`` most probable classes out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel

from models.images import ImageSpec, decode_image
from models.maths import softmax
from models.serving import Endpoint, Limits, Prepared, Serving, example_image
from models.task import Spec


class Prediction(BaseModel):
    label: str
    probability: float


class ClassifyResult(BaseModel):
    model_version: str
    predictions: list[Prediction]


def top_k(logits: np.ndarray, classes: list[str], k: int) -> list[Prediction]:
    """Logits of one image -> the ``k`` most probable classes with probabilities."""
    probs = softmax(logits.astype(np.float64))
    order = np.argsort(-probs)[: max(1, min(k, len(probs)))]
    return [Prediction(label=classes[i], probability=float(probs[i])) for i in order]


class ClassifyServing(Serving):
    task = "classify"

    def __init__(self, spec: Spec, limits: Limits) -> None:
        super().__init__(spec, limits)
        self.image = ImageSpec.from_spec(spec)
        self.classes = list(spec["classes"])

    def endpoints(self) -> dict[str, Endpoint]:
        return {"classify": Endpoint(self.prepare, self.answer)}

    def prepare(self, image: Path, k: int = 5) -> Prepared:
        img = decode_image(image, self.limits.max_image_pixels, self.limits.max_body_bytes)
        return Prepared([(self.image.preprocess(img)[None],)], context=k)

    def examples(self, folder: Path) -> dict[str, dict[str, Any]]:
        return {"classify": {"image": example_image(folder), "k": 2}}

    def answer(self, prepared: Prepared, outputs: list[np.ndarray], version: str) -> ClassifyResult:
        return ClassifyResult(model_version=version, predictions=top_k(outputs[0][0], self.classes, prepared.context))


SERVING = ClassifyServing
