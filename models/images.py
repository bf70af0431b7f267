"""Safe image decoding, shared by every image task and its service."""

from __future__ import annotations

import io
import random
import warnings
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from models.inputs import InvalidInput

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})
DEFAULT_MAX_PIXELS = 25_000_000
DEFAULT_MAX_BYTES = 20 * 1024 * 1024


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


def split_images(folder: Path, listed: Path, valid_pct: float, seed: int) -> tuple[list[Path], list[Path]]:
    """``(train, valid)`` images in ``folder``: the file ``listed`` (``valid.txt``) names the validation ones, else a seeded random split."""
    images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise FileNotFoundError(f"no images in {folder}")
    if listed.is_file():
        names = {line.strip() for line in listed.read_text().splitlines() if line.strip()}
        return [p for p in images if p.name not in names], [p for p in images if p.name in names]
    shuffled = images.copy()
    random.Random(seed).shuffle(shuffled)
    n_valid = max(1, int(round(len(images) * valid_pct)))
    return sorted(shuffled[n_valid:]), sorted(shuffled[:n_valid])
