"""Serving ``classify``: an image in, the ``k`` most probable classes out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from models.images import ImageSpec, decode_image
from models.inputs import InvalidInput
from models.maths import softmax
from models.serving import Endpoint, Limits, Prepared, Serving, example_image, per_item
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
    shadow_measure = "top1"
    canary_p99_ms = 2000.0
    feedback = {"classify": "the image's true class"}

    def __init__(self, spec: Spec, limits: Limits) -> None:
        super().__init__(spec, limits)
        self.image = ImageSpec.from_spec(spec)
        self.classes = list(spec["classes"])

    def endpoints(self) -> dict[str, Endpoint]:
        return {"classify": Endpoint(self.prepare, self.answer, heavy_answer=lambda p: bool(p.outputs))}

    def prepare(self, image: Path, k: int = 5, explain: bool = False) -> Prepared:
        img = decode_image(image, self.limits.max_image_pixels, self.limits.max_body_bytes)
        x = (self.image.preprocess(img)[None],)
        size = {"width": float(img.width), "height": float(img.height)}  # drift features the resized input hides
        if explain:
            return Prepared([x], context=(k, img), outputs=("cam",), needs="explain=true", features=size)
        return Prepared([x], context=(k, None), features=size)

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

    def agreement(self, endpoint: str, champion: ClassifyResult, challenger: ClassifyResult) -> float | None:
        return float(champion.predictions[0].label == challenger.predictions[0].label)

    def outcome(self, endpoint: str, value: Any, request: dict[str, Any]) -> list[Any]:
        def check(label: Any, i: int) -> str:
            if label not in self.classes:
                raise InvalidInput("unknown_label", f"outcome {label!r} is not a class of this model; it knows {len(self.classes)}: {', '.join(self.classes[:5])}, ...")
            return str(label)

        return per_item(value, 1, check)


SERVING = ClassifyServing
