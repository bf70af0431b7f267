"""Images from other sources, and the check that the model does no harm on them.

A model trained on street photos can make other images worse than plain
bicubic upscaling (a smooth gradient, saturated colours, a portrait). Training
adds :func:`varied_images`; after training, :func:`held_out_report` scores the
model against bicubic on :func:`other_sources` (four synthetic images) and on
:func:`unseen_photos` (photos of kinds the training data has none of), and
:func:`check_no_harm` stops the run when the model is worse than bicubic by
more than ``max_harm_db`` on any of them, or not better on average.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from models.crappify import crappify, item_seed
from models.errors import GuardFailed
from models.task import Dataset
from models.tasks.superres.quality import bicubic, psnr, to_array

UNSEEN_PHOTOS = ("grace_hopper.jpg", "Minduka_Present_Blue_Pack.png")
"""matplotlib's sample photos (a portrait, a gift box): kinds of photo CamVid has none of."""


class DoesHarm(GuardFailed, ValueError):
    """The model came out worse than bicubic on an image unlike its training photos."""


def other_sources(size: tuple[int, int] = (96, 128), seed: int = 0) -> dict[str, Image.Image]:
    """High-resolution images unlike the training photos, for the does-no-harm check."""
    h, w = size
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    # a saturated "flower": magenta petals on green with a yellow centre
    r = np.hypot(yy - h / 2, xx - w / 2)
    angle = np.arctan2(yy - h / 2, xx - w / 2)
    petals = r < (0.3 + 0.12 * np.cos(6 * angle)) * min(h, w)
    flower = np.zeros((h, w, 3), dtype=np.float32)
    flower[:] = (20, 150, 30)
    flower[petals] = (230, 20, 160)
    flower[r < 0.08 * min(h, w)] = (250, 220, 0)
    flower += rng.normal(0, 4, size=flower.shape)
    # a digit, MNIST-like: white on black, upscaled and blurred strokes
    digit = Image.new("L", (28, 28), 0)
    ImageDraw.Draw(digit).line([(7, 6), (21, 6), (12, 23)], fill=255, width=3)
    digit = digit.resize((w, h), Image.Resampling.BICUBIC).convert("RGB")
    # saturated colour bars and a smooth hue gradient
    bars = np.zeros((h, w, 3), dtype=np.float32)
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255), (255, 0, 255), (255, 255, 255), (0, 0, 0)]
    for i, c in enumerate(colours):
        bars[:, i * w // len(colours) : (i + 1) * w // len(colours)] = c
    hue = np.stack([np.sin(xx / w * np.pi) * 255, np.sin(yy / h * np.pi) * 255, (1 - xx / w) * 255], axis=-1)
    return {
        "flower": Image.fromarray(np.clip(flower, 0, 255).astype(np.uint8)),
        "digit": digit,
        "colour_bars": Image.fromarray(bars.astype(np.uint8)),
        "gradient": Image.fromarray(np.clip(hue, 0, 255).astype(np.uint8)),
    }


def unseen_photos(size: tuple[int, int] = (96, 128)) -> dict[str, Image.Image]:
    """Crops of photos of kinds the training data has none of, each at ``size`` = (height, width), at two scales."""
    import matplotlib.cbook

    h, w = size
    out = {}
    for file in UNSEEN_PHOTOS:
        with Image.open(matplotlib.cbook.get_sample_data(file, asfileobj=False)) as photo:
            img = photo.convert("RGB")
        stem = file.split(".")[0].split("_")[0].lower()
        for k, width in enumerate((2 * w, 3 * w)):
            scaled = img.resize((width, round(img.height * width / img.width)), Image.Resampling.BICUBIC)
            for j, (fy, fx) in enumerate(((0.5, 0.5), (0.25, 0.3), (0.7, 0.7))):
                top, left = int((scaled.height - h) * fy), int((scaled.width - w) * fx)
                out[f"{stem}_{k}{j}"] = scaled.crop((left, top, left + w, top + h))
    return out


def varied_images(n: int, size: tuple[int, int] = (96, 128), seed: int = 1) -> list[Image.Image]:
    """``n`` synthetic high-resolution images unlike street photos, for training: smooth gradients and colour fields,
    flat shapes, saturated bars, bright strokes on dark (seeded; none is one of :func:`other_sources`)."""
    h, w = size
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    out = []
    for i in range(n):
        kind = i % 5
        c1, c2 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        if kind == 0:  # linear gradient at a random angle
            a = rng.uniform(0, np.pi)
            t = (np.cos(a) * xx / w + np.sin(a) * yy / h)
            t = (t - t.min()) / max(t.max() - t.min(), 1e-6)
            img = c1 * (1 - t[..., None]) + c2 * t[..., None]
        elif kind == 1:  # smooth sinusoidal colour field
            f = rng.uniform(0.3, 1.5, 3); p = rng.uniform(0, 2 * np.pi, 3)
            img = np.stack([127.5 + 127.5 * np.sin(f[k] * np.pi * (xx / w if k != 1 else yy / h) + p[k]) for k in range(3)], -1)
        elif kind == 2:  # flat shapes on a flat background, a little noise
            im = Image.new("RGB", (w, h), tuple(int(v) for v in c1)); d = ImageDraw.Draw(im)
            for _ in range(rng.integers(2, 6)):
                x0, y0 = rng.integers(0, w), rng.integers(0, h); x1, y1 = x0 + rng.integers(10, w // 2), y0 + rng.integers(10, h // 2)
                col = tuple(int(v) for v in rng.uniform(0, 255, 3))
                (d.ellipse if rng.random() < 0.5 else d.rectangle)([x0, y0, x1, y1], fill=col)
            img = np.asarray(im, dtype=np.float32) + rng.normal(0, rng.uniform(0, 5), (h, w, 3))
        elif kind == 3:  # saturated bars
            k = rng.integers(3, 10); img = np.zeros((h, w, 3), np.float32)
            cols = rng.choice([0, 255], size=(k, 3)).astype(np.float32)
            edges = np.linspace(0, w if rng.random() < 0.5 else h, k + 1).astype(int)
            for j in range(k):
                if edges[-1] == w: img[:, edges[j]:edges[j + 1]] = cols[j]
                else: img[edges[j]:edges[j + 1]] = cols[j]
        else:  # strokes: bright lines on a dark background, drawn small and upscaled
            im = Image.new("L", (w // 4, h // 4), int(rng.integers(0, 40))); d = ImageDraw.Draw(im)
            for _ in range(rng.integers(1, 4)):
                d.line([tuple(rng.integers(0, (w // 4, h // 4))) for _ in range(rng.integers(2, 4))], fill=int(rng.integers(180, 256)), width=int(rng.integers(1, 3)))
            img = np.asarray(im.resize((w, h), Image.Resampling.BICUBIC).convert("RGB"), dtype=np.float32)
        out.append(Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)))
    return out


def held_out_report(run: Callable[[np.ndarray], np.ndarray], data: Dataset, config: Any) -> dict[str, float]:
    """Gain over bicubic (dB) on the validation inputs with the number drawn, on other sources and on unseen photos.

    ``run`` maps a batch of low-resolution inputs ``(N, 3, h, w)`` to the model's output.
    """
    report: dict[str, float] = {}
    numbered = data.extras.get("valid_numbered_x")
    if numbered is not None and len(numbered):
        model = float(psnr(run(numbered), data.valid_y).mean())
        base = float(np.mean(psnr(np.stack([bicubic(x, config.scale) for x in numbered]), data.valid_y)))
        report.update({"psnr_numbered": model, "baseline_psnr_numbered": base, "gain_db_numbered": model - base})
    size = tuple(config.hr_size)
    images = {**{f"other_{k}": v for k, v in other_sources(size).items()}, **{f"photo_{k}": v for k, v in unseen_photos(size).items()}}
    gains = []
    for name, img in images.items():
        target = to_array(img)[None]
        small = crappify(img, item_seed(config.seed, name.split("_", 1)[1] if name.startswith("other_") else name), config.scale, config.quality, number=False).image
        x = to_array(small)[None]
        gain = float(psnr(run(x), target)[0] - psnr(bicubic(x[0], config.scale)[None], target)[0])
        report[f"gain_db_{name}"] = gain
        gains.append(gain)
    report["gain_db_unseen_min"] = min(gains)
    report["gain_db_unseen_mean"] = float(np.mean(gains))
    return report


def check_no_harm(report: dict[str, float], max_harm_db: float | None) -> None:
    """Raise :class:`DoesHarm` when an image of :func:`held_out_report` lost more than ``max_harm_db``, or the mean gain is not positive."""
    if max_harm_db is None:
        return
    gains = {k.removeprefix("gain_db_"): v for k, v in report.items() if k.startswith(("gain_db_other_", "gain_db_photo_"))}
    worse = {k: v for k, v in gains.items() if v < -max_harm_db}
    if worse:
        detail = ", ".join(f"{k} {v:+.3f} dB" for k, v in sorted(worse.items()))
        raise DoesHarm(f"the model is worse than bicubic on images from other sources ({detail}; allowed -{max_harm_db} dB)")
    mean = float(np.mean(list(gains.values()))) if gains else 0.0
    if gains and mean <= 0.0:
        raise DoesHarm(f"the model is not better than bicubic on images from other sources on average ({mean:+.3f} dB)")
