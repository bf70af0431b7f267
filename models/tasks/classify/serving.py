"""Serving ``classify``: an image in, the ``k`` most probable classes out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

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
    heatmap_png: str | None = Field(
        default=None,
        description="with explain=true: the top class's activation map over the photo, a PNG in base64 (lesson 6); else null",
        json_schema_extra={"nullable": True},
    )


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
        return {"classify": Endpoint(self.prepare, self.answer, heavy_answer=lambda p: bool(p.outputs))}

    def prepare(self, image: Path, k: int = 5, explain: bool = False) -> Prepared:
        img = decode_image(image, self.limits.max_image_pixels, self.limits.max_body_bytes)
        x = (self.image.preprocess(img)[None],)
        if explain:
            return Prepared([x], context=(k, img), outputs=("cam",), needs="explain=true")
        return Prepared([x], context=(k, None))

    def examples(self, folder: Path) -> dict[str, dict[str, Any]]:
        return {"classify": {"image": example_image(folder), "k": 2, "explain": True}}

    def answer(self, prepared: Prepared, outputs: list[np.ndarray], version: str) -> ClassifyResult:
        k, photo = prepared.context
        predictions = top_k(outputs[0][0], self.classes, k)
        heatmap = None
        if photo is not None:
            from models.tasks.classify.explain import overlay, png_base64

            top = self.classes.index(predictions[0].label)
            heatmap = png_base64(overlay(photo, outputs[1][0][top]))
        return ClassifyResult(model_version=version, predictions=predictions, heatmap_png=heatmap)


SERVING = ClassifyServing
