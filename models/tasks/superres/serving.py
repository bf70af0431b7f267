"""Serving ``superres``: an image in, the model's upscaling out as a PNG.

Images are processed in overlapping tiles of the fixed size the model was
registered with (``tile``, ``margin`` in its spec; :mod:`models.tiling`): every
tile of an image at least ``tile`` pixels each way has the same shape, so tiles
of concurrent requests run in one model batch, and memory stays bounded
whatever the image's size (each tile's output is placed as it comes). With
``margin`` at least the network's receptive field, the result is exactly the
whole-image result. The input pixel cap is ``ZOO_SUPERRES_MAX_PIXELS``, never
above ``ZOO_MAX_IMAGE_PIXELS``.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from models.images import decode_image
from models.serving import Endpoint, Limits, Prepared, Serving, check_min_size, example_image
from models.task import Spec
from models.tasks.superres.quality import to_array
from models.tiling import TilePlan


def encode_png(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG", compress_level=3)
    return buf.getvalue()


class SuperresServing(Serving):
    task = "superres"
    queue_limit = 512
    shadow_measure = "psnr"
    canary_p99_ms = 20000.0
    wait_budget_s = 30.0

    def __init__(self, spec: Spec, limits: Limits) -> None:
        super().__init__(spec, limits)
        self.scale, self.tile, self.margin = int(spec["scale"]), int(spec["tile"]), int(spec["margin"])

    def endpoints(self) -> dict[str, Endpoint]:
        return {"superres": Endpoint(self.prepare, self.answer, heavy_answer=True)}

    def prepare(self, image: Path) -> Prepared:
        x = to_array(decode_image(image, self.limits.superres_max_pixels, self.limits.max_body_bytes))
        plan = TilePlan(x.shape[1], x.shape[2], self.tile, self.margin, self.scale)
        tiles = list(plan.tiles())
        out = np.empty((plan.height * self.scale, plan.width * self.scale, 3), dtype=np.uint8)

        def place(i: int, upscaled: np.ndarray) -> None:
            rgb = (np.clip(upscaled[0], 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
            plan.place(out, rgb, tiles[i], channels_last=True)

        inputs = [(plan.cut(x, t)[None],) for t in tiles]  # views: each is copied into its batch as it runs
        return Prepared(inputs, context=out, items=1, sink=place)

    def check_tensors(self, inputs: dict[str, np.ndarray]) -> None:
        if self.spec.get("arch") == "unet":  # the U-Net body pools 32x down
            check_min_size("image", inputs["image"], 32)

    def examples(self, folder: Path) -> dict[str, dict[str, Any]]:
        return {"superres": {"image": example_image(folder, (self.tile + 9, self.tile // 2 + 3))}}

    def answer(self, prepared: Prepared, outputs: list[np.ndarray], version: str) -> bytes:
        return encode_png(prepared.context)

    def agreement(self, endpoint: str, champion: bytes, challenger: bytes) -> float | None:
        """The PSNR of the challenger's image against the champion's (capped at 100 dB for identical ones)."""
        a, b = (np.asarray(Image.open(io.BytesIO(x)).convert("RGB"), dtype=np.float64) for x in (champion, challenger))
        if a.shape != b.shape:
            return None
        mse = float(np.mean((a - b) ** 2))
        return 100.0 if mse == 0 else min(100.0, 10 * np.log10(255.0**2 / mse))


SERVING = SuperresServing
