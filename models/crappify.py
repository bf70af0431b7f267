"""The course's "crappifier" (lesson 7): make a low-quality input from a good photo, seeded.

Downscale by ``scale`` (bilinear, antialiased), optionally draw a number on the
image (the JPEG quality, white, at a random place in its top-left quarter, as the
course does) and save it as JPEG at a random quality. The same seed always gives
the same bytes; the quality does not depend on whether the number is drawn, so
an input with and without the number differ only by the number.
"""

from __future__ import annotations

import io
import random
import zlib
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont


@dataclass(frozen=True)
class Crappified:
    image: Image.Image
    """The low-resolution RGB input (decoded from the JPEG)."""
    quality: int
    number_at: tuple[int, int] | None
    """Top-left corner of the drawn number, or ``None``."""
    jpeg: bytes


def item_seed(*parts: object) -> int:
    """A stable 32-bit seed from any parts (e.g. run seed, file name, variant): not Python's salted ``hash``."""
    return zlib.crc32("\x1f".join(str(p) for p in parts).encode())


def crappify(
    img: Image.Image,
    seed: int,
    scale: int = 2,
    quality: tuple[int, int] = (10, 70),
    number: bool = True,
) -> Crappified:
    """Downscale ``img`` by ``scale``, draw the JPEG quality on it (when ``number``), JPEG-compress it."""
    rng = random.Random(seed)
    q = rng.randint(*quality)
    corner = (rng.random(), rng.random())  # drawn always, so the stream is the same with or without the number
    img = img.convert("RGB")
    w, h = img.size
    small = img.resize((max(1, w // scale), max(1, h // scale)), Image.Resampling.BILINEAR, reducing_gap=None)
    where = None
    if number:
        where = (int(corner[0] * (small.width // 2 + 1)), int(corner[1] * (small.height // 2 + 1)))
        ImageDraw.Draw(small).text(where, str(q), fill=(255, 255, 255), font=ImageFont.load_default())
    buf = io.BytesIO()
    small.save(buf, format="JPEG", quality=q)
    data = buf.getvalue()
    with Image.open(io.BytesIO(data)) as decoded:
        out = decoded.convert("RGB")
    return Crappified(out, q, where, data)
