"""Serving ``segment``: a street photo in, its class-index mask (PNG), class shares and an optional overlay out."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pydantic import BaseModel, Field

from models.images import ImageSpec, decode_image
from models.serving import Endpoint, Limits, Prepared, Serving, check_min_size, example_image
from models.task import Spec
from models.tasks.segment.masks import class_shares, overlay, palette, png_bytes, predict_mask


class ClassShare(BaseModel):
    label: str
    index: int = Field(description="the class index: the mask's pixel value")
    share: float = Field(description="share of the image's pixels given this class")
    colour: str = Field(description="the class's colour in overlay_png, #rrggbb (a legend)")


class SegmentResult(BaseModel):
    model_version: str
    width: int
    height: int
    classes: list[str] = Field(description="class names; a mask pixel value v means classes[v]")
    shares: list[ClassShare] = Field(description="classes present in the mask, largest share first")
    mask_png: str = Field(description="base64 PNG, 8-bit greyscale, the input's size: one class index per pixel")
    overlay_png: str | None = Field(
        None, description="base64 PNG of the mask's colours over the photo (with overlay=true), else null", json_schema_extra={"nullable": True}
    )


class SegmentServing(Serving):
    task = "segment"
    queue_limit = 64
    shadow_measure = "iou"
    canary_p99_ms = 5000.0
    wait_budget_s = 10.0

    def __init__(self, spec: Spec, limits: Limits) -> None:
        super().__init__(spec, limits)
        self.image = ImageSpec.from_spec(spec)
        self.classes = list(spec["classes"])
        self.colours = ["#%02x%02x%02x" % tuple(int(v) for v in rgb) for rgb in palette(len(self.classes))]

    def endpoints(self) -> dict[str, Endpoint]:
        return {"segment": Endpoint(self.prepare, self.answer, heavy_answer=True)}

    def prepare(self, image: Path, overlay: bool = False) -> Prepared:
        img = decode_image(image, self.limits.max_image_pixels, self.limits.max_body_bytes)
        size = {"width": float(img.width), "height": float(img.height)}  # drift features the resized input hides
        return Prepared([(self.image.preprocess(img)[None],)], context=(img, overlay), features=size)

    def check_tensors(self, inputs: dict[str, np.ndarray]) -> None:
        check_min_size("image", inputs["image"], 32)

    def examples(self, folder: Path) -> dict[str, dict[str, Any]]:
        return {"segment": {"image": example_image(folder), "overlay": True}}

    def answer(self, prepared: Prepared, outputs: list[np.ndarray], version: str) -> SegmentResult:
        img, with_overlay = prepared.context
        assert isinstance(img, Image.Image)
        mask = predict_mask(outputs[0][0], img.size)
        over = None
        if with_overlay:
            over = base64.b64encode(png_bytes(overlay(np.asarray(img, dtype=np.uint8), mask, len(self.classes)))).decode()
        return SegmentResult(
            model_version=version,
            width=img.width,
            height=img.height,
            classes=self.classes,
            shares=[ClassShare(**s, colour=self.colours[s["index"]]) for s in class_shares(mask, self.classes)],
            mask_png=base64.b64encode(png_bytes(mask)).decode(),
            overlay_png=over,
        )

    def agreement(self, endpoint: str, champion: SegmentResult, challenger: SegmentResult) -> float | None:
        """The mean IoU of the two masks over the classes either has."""
        from models.tasks.segment.masks import decode_mask

        a, b = decode_mask(champion.mask_png), decode_mask(challenger.mask_png)
        if a.shape != b.shape:
            return None
        ious = [((a == c) & (b == c)).sum() / ((a == c) | (b == c)).sum() for c in np.union1d(np.unique(a), np.unique(b))]
        return float(np.mean(ious))


SERVING = SegmentServing
