"""Images, once for every image task: files, safe decoding, checks, statistics, and the typed spec.

:class:`ImageSpec` is the one description of how a model sees an image (its size,
the resize filter, the normalisation), stored in the model's JSON spec; training
and the services both preprocess through it, the way timm's ``PretrainedCfg``
drives its transforms.
"""

from __future__ import annotations

import io
import random
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from models.inputs import InvalidInput

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"})
"""The image files every image task trains on (and the services decode): one set for all of them."""
DEFAULT_MAX_PIXELS = 25_000_000
DEFAULT_MAX_BYTES = 20 * 1024 * 1024
RESAMPLING = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC, "nearest": Image.Resampling.NEAREST}


def decode_image(
    data: bytes | Path,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Image.Image:
    """Decode an uploaded image into RGB, refusing oversize bodies and pixel bombs.

    The pixel count is checked from the header, before any pixel is decoded.
    """
    size = data.stat().st_size if isinstance(data, Path) else len(data)
    if size > max_bytes:
        raise InvalidInput("too_large", f"image body is {size} bytes; the limit is {max_bytes}", status=413)
    if size == 0:
        raise InvalidInput("not_an_image", "image body is empty")
    raw = data.read_bytes() if isinstance(data, Path) else data
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(raw))
            width, height = img.size
            if width * height > max_pixels:
                raise InvalidInput(
                    "too_many_pixels",
                    f"image is {width}x{height} = {width * height} pixels; the limit is {max_pixels}",
                    status=413,
                )
            img.load()
    except InvalidInput:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InvalidInput("too_many_pixels", f"image refused as a decompression bomb: {exc}", status=413) from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InvalidInput("not_an_image", f"body is not a decodable image ({type(exc).__name__})") from exc
    return img.convert("RGB")


def image_files(folder: Path) -> list[Path]:
    """The image files directly in ``folder``, sorted."""
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def split_images(folder: Path, listed: Path, valid_pct: float, seed: int) -> tuple[list[Path], list[Path]]:
    """``(train, valid)`` images in ``folder``: the file ``listed`` (``valid.txt``) names the validation ones, else a seeded random split."""
    images = image_files(folder)
    if not images:
        raise FileNotFoundError(f"no images in {folder}")
    if listed.is_file():
        names = {line.strip() for line in listed.read_text().splitlines() if line.strip()}
        return [p for p in images if p.name not in names], [p for p in images if p.name in names]
    shuffled = images.copy()
    random.Random(seed).shuffle(shuffled)
    n_valid = max(1, int(round(len(images) * valid_pct)))
    return sorted(shuffled[n_valid:]), sorted(shuffled[:n_valid])


def image_sizes(paths: Iterable[Path]) -> tuple[dict[Path, tuple[int, int]], list[str]]:
    """``(width, height)`` of every file that decodes (read from its header, then verified), and the names of those that do not."""
    sizes: dict[Path, tuple[int, int]] = {}
    broken: list[str] = []
    for path in paths:
        try:
            with Image.open(path) as img:
                size = img.size
                img.verify()
            sizes[path] = size
        except Exception:  # any decoder error means the file is unusable
            broken.append(path.name)
    return sizes, broken


def broken_report(broken: Sequence[str], what: str = "image(s)") -> list[str]:
    """The validation problem for files that do not decode (none when every file does)."""
    return [f"{len(broken)} {what} do not decode, e.g. {list(broken[:5])}"] if broken else []


def split_report(train: Sequence[Path], valid: Sequence[Path], what: str = "image(s)") -> list[str]:
    """The validation problems of a split: fewer than two training files, or no validation file."""
    problems = [f"{len(train)} training {what}; at least 2 are needed"] if len(train) < 2 else []
    return problems + (["the validation split is empty"] if not valid else [])


def channel_stats(images: Iterable[np.ndarray]) -> dict[str, list[float]]:
    """Per-channel mean and std over RGB ``uint8`` HWC images (float64 sums), rounded for the JSON spec."""
    total = np.zeros(3)
    total_sq = np.zeros(3)
    count = 0
    for img in images:
        arr = img.astype(np.float64) / 255.0
        total += arr.sum(axis=(0, 1))
        total_sq += (arr**2).sum(axis=(0, 1))
        count += arr.shape[0] * arr.shape[1]
    mean = total / max(count, 1)
    std = np.sqrt(np.maximum(total_sq / max(count, 1) - mean**2, 1e-12))
    return {"mean": [round(float(m), 6) for m in mean], "std": [round(float(s), 6) for s in np.maximum(std, 1e-3)]}


FITS = ("squish", "crop")


def centre_crop_box(size: tuple[int, int], target: tuple[int, int]) -> tuple[int, int, int, int]:
    """The centre box of an image of ``size`` (w, h) at the aspect ratio of ``target`` (w, h), as fastai's
    ``Resize(method="crop")`` cuts it at inference (its ``crop_pad`` with ``pcts=(0.5, 0.5)``, integer arithmetic and all)."""
    w, h = size
    m = w / target[0] if w / target[0] < h / target[1] else h / target[1]
    cw, ch = int(m * target[0]), int(m * target[1])
    left, top = int(0.5 * (w - cw)), int(0.5 * (h - ch))
    return left, top, left + cw, top + ch


@dataclass(frozen=True)
class ImageSpec:
    """How a model sees an image: resized to ``(height, width)`` with ``resize``, scaled to [0, 1], normalised per channel.

    Read from (and written to) a model's JSON spec: ``image_size`` (an int for a
    square, or ``[height, width]``), ``mean``, ``std`` and optionally ``resize``
    and ``fit``: ``squish`` (the default: stretched to the size) or ``crop``
    (fastai's ``Resize(method="crop")`` at inference: the centre at the size's
    aspect ratio, then resized; imported fastai Learners use it).
    """

    height: int
    width: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize: str = "bilinear"
    fit: str = "squish"

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> "ImageSpec":
        size = spec["image_size"]
        h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
        resize = spec.get("resize", "bilinear")
        if resize not in RESAMPLING:
            raise ValueError(f"unknown resize {resize!r}; known: {', '.join(RESAMPLING)}")
        fit = spec.get("fit", "squish")
        if fit not in FITS:
            raise ValueError(f"unknown fit {fit!r}; known: {', '.join(FITS)}")
        return cls(h, w, tuple(spec["mean"]), tuple(spec["std"]), resize, fit)  # type: ignore[arg-type]

    def pixels(self, img: Image.Image) -> np.ndarray:
        """RGB ``uint8`` HWC array at the model's size."""
        img = img.convert("RGB")
        if self.fit == "crop":
            img = img.crop(centre_crop_box(img.size, (self.width, self.height)))
        if img.size != (self.width, self.height):
            img = img.resize((self.width, self.height), RESAMPLING[self.resize])
        return np.asarray(img, dtype=np.uint8)

    def normalise(self, pixels: np.ndarray) -> np.ndarray:
        """``uint8`` HWC at the model's size -> normalised float32 CHW."""
        arr = pixels.astype(np.float32) / 255.0
        mean = np.asarray(self.mean, dtype=np.float32)
        std = np.asarray(self.std, dtype=np.float32)
        return ((arr - mean) / std).transpose(2, 0, 1).copy()

    def preprocess(self, img: Image.Image) -> np.ndarray:
        """PIL image -> the model's float32 CHW input. Training and serving both call this."""
        return self.normalise(self.pixels(img))

    def denormalise(self, x: np.ndarray) -> np.ndarray:
        """A model input (CHW) back to an HWC image in [0, 1], for figures."""
        return np.clip(x.transpose(1, 2, 0) * np.asarray(self.std) + np.asarray(self.mean), 0, 1)
