"""``vision_learner`` -> ``classify``: the Learner's own model, its vocab, resize and normalisation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from models.fastai_import import Unsupported
from models.fastai_import.converted import Converted, Probe
from models.images import ImageSpec

RESAMPLES = {int(Image.Resampling.BILINEAR): "bilinear", int(Image.Resampling.BICUBIC): "bicubic", int(Image.Resampling.NEAREST): "nearest"}
INFERENCE_BATCH_TFMS = ("IntToFloatTensor", "Normalize")
"""Batch transforms that act at inference; any other one must be training-only (``split_idx == 0``)."""


def image_spec(learn: Any) -> dict[str, Any]:
    """``image_size``, ``resize``, ``fit``, ``mean`` and ``std`` from the Learner's item and batch transforms."""
    from fastai.data.transforms import Normalize
    from fastai.vision.augment import Resize

    resizes = [t for t in learn.dls.after_item.fs if isinstance(t, Resize)]
    if len(resizes) != 1:
        raise Unsupported(f"the Learner's item transforms need exactly one Resize, not {len(resizes)}: {learn.dls.after_item}")
    r = resizes[0]
    method = str(r.method)
    if method not in ("squish", "crop"):
        raise Unsupported(f"Resize(method={method!r}) is not served; export the Learner with method 'squish' or 'crop'")
    resample = RESAMPLES.get(int(r.mode))
    if resample is None:
        raise Unsupported(f"Resize's resampling {r.mode!r} is not served (bilinear, bicubic or nearest)")
    others = [t for t in learn.dls.after_item.fs if type(t).__name__ not in ("Resize", "ToTensor", "AddMaskCodes") and getattr(t, "split_idx", None) != 0]
    if others:
        raise Unsupported(f"item transforms that act at inference are not served: {[type(t).__name__ for t in others]}")
    mean, std = [0.0] * 3, [1.0] * 3
    for t in learn.dls.after_batch.fs:
        name = type(t).__name__
        if isinstance(t, Normalize):
            mean, std = [float(v) for v in t.mean.flatten()], [float(v) for v in t.std.flatten()]
        elif name == "IntToFloatTensor":
            if float(t.div) != 255.0:
                raise Unsupported(f"IntToFloatTensor(div={t.div}) is not served (255 is)")
        elif getattr(t, "split_idx", None) != 0:
            raise Unsupported(f"batch transform {name} acts at inference and is not served")
    width, height = (int(v) for v in r.size)  # fastai keeps (width, height)
    return {"image_size": [height, width], "resize": resample, "fit": method, "mean": mean, "std": std}


def probe_images(folder: Path) -> list[Path]:
    """Images the Learner never saw: noise and gradients of odd sizes and modes."""
    rng = np.random.default_rng(4163)
    folder.mkdir(parents=True, exist_ok=True)
    pictures = [
        Image.fromarray(rng.integers(0, 256, (53, 37, 3), dtype=np.uint8)),
        Image.fromarray(np.linspace(0, 255, 120 * 80, dtype=np.float32).reshape(80, 120).astype(np.uint8)),  # greyscale
        Image.fromarray(rng.integers(0, 256, (64, 64, 4), dtype=np.uint8)),  # RGBA
        Image.fromarray(np.kron(rng.integers(0, 256, (6, 9, 3)), np.ones((20, 20, 1))).astype(np.uint8)),
    ]
    paths = []
    for i, picture in enumerate(pictures):
        paths.append(folder / f"probe-{i}.png")
        picture.save(paths[-1])
    return paths


def convert(learn: Any, out: Path, data_dir: Path | None = None) -> Converted:
    from fastai.vision.core import PILImage

    classes = [str(c) for c in learn.dls.vocab]
    spec = {**image_spec(learn), "classes": classes, "cam": False}
    image = ImageSpec.from_spec(spec)
    net = learn.model.eval().cpu()
    probes, inputs = [], []
    for path in probe_images(out / "probes"):
        _, _, probs = learn.predict(PILImage.create(path))
        expected = {label: float(p) for label, p in zip(classes, probs.tolist())}
        probes.append(Probe("classify", {"image": str(path.relative_to(out)), "k": len(classes)}, expected))
        inputs.append(image.preprocess(Image.open(path)))
    learner = {"model": type(net).__name__, "loss": type(learn.loss_func).__name__, "item_tfms": str(learn.dls.after_item), "batch_tfms": str(learn.dls.after_batch)}
    return Converted(net, spec, (np.stack(inputs).astype(np.float32),), probes, learner)
