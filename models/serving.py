"""What a task gives the services: each endpoint's request checks, model inputs and response.

A task's serving module (``models/tasks/<name>/serving.py``) defines one
:class:`Serving` subclass. The services build one per loaded model version,
from its spec, and run each request through it:

    prepare (decode, check, preprocess) -> the model (batched) -> answer (postprocess)

so predict = stem + model + postprocess, with the stem and the postprocessing
owned by the task, next to the training code that must agree with them.
Nothing here imports PyTorch or BentoML; the response types are pydantic models,
which BentoML publishes as the API's schema.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from models.settings import ServingSettings
from models.task import Spec

Arrays = tuple[np.ndarray, ...]


@dataclass(frozen=True)
class Limits:
    """Per-request limits, from the serving settings (``ZOO_MAX_*``)."""

    max_body_bytes: int = 20 * 1024 * 1024
    max_image_pixels: int = 25_000_000
    superres_max_pixels: int = 4_000_000
    max_texts: int = 64
    max_records: int = 10_000
    max_pairs: int = 10_000

    @classmethod
    def of(cls, settings: ServingSettings) -> "Limits":
        return cls(
            max_body_bytes=settings.max_body_bytes,
            max_image_pixels=settings.max_image_pixels,
            superres_max_pixels=min(settings.superres_max_pixels, settings.max_image_pixels),
            max_texts=settings.max_texts,
            max_records=settings.max_records,
            max_pairs=settings.max_pairs,
        )


@dataclass
class Prepared:
    """One request, checked and preprocessed: the model calls it needs and what its answer needs besides."""

    inputs: Sequence[Arrays]
    """The model's inputs, one group per model call (usually one; a super-resolution image: one per tile)."""
    context: Any = None
    """Whatever :meth:`Endpoint.answer` needs besides the outputs (the decoded image, ``k``, ...)."""
    unknown: tuple[str, ...] = ()
    """Request fields with a value the model does not know (served from the unknown index, counted)."""
    items: int | None = None
    """Predictions this request counts as (default: the rows of its first input group)."""
    sink: Callable[[int, np.ndarray], None] | None = None
    """Takes each group's output as it comes, instead of collecting them all (bounded memory for many tiles)."""
    outputs: tuple[str, ...] = ()
    """Model outputs this request needs besides the first (one group, run on its own, unbatched): the answer then
    gets every named output of that group, in this order after the first (e.g. ``("cam",)`` for an explanation)."""
    needs: str = ""
    """What in the request asked for ``outputs`` (for the error when the model version has none: ``explain=true``)."""

    @property
    def count(self) -> int:
        return self.items if self.items is not None else (len(self.inputs[0][0]) if self.inputs else 0)


@dataclass(frozen=True)
class Endpoint:
    """One API of a task: how a request becomes model inputs, and the outputs a response."""

    prepare: Callable[..., Prepared]
    """Decode and check the request (raise :class:`models.inputs.InvalidInput`), preprocess it."""
    answer: Callable[[Prepared, list[np.ndarray], str], Any]
    """``(prepared, outputs, model_version)`` -> the response (a pydantic model, or bytes)."""
    cheap: Callable[..., bool] = field(default=lambda **request: False)
    """Whether preparing this request is cheap enough to run on the event loop (else a worker thread)."""
    heavy_answer: bool | Callable[[Prepared], bool] = False
    """Whether answering encodes images (run in a worker thread); or a function of the prepared request that says."""


class Serving(ABC):
    """A task's serving hooks for one model version, built from its spec."""

    task: ClassVar[str]
    unknown_fields: ClassVar[tuple[str, ...]] = ()
    """Request fields whose values can be unknown to a model (their counters start at 0)."""
    queue_limit: ClassVar[int] = 256
    """Model calls waiting at most (per worker) before new requests get 503."""
    wait_budget_s: ClassVar[float] = 5.0
    """How long a model call may wait for its batch before its request gets 503."""

    def __init__(self, spec: Spec, limits: Limits) -> None:
        self.spec, self.limits = spec, limits

    @abstractmethod
    def endpoints(self) -> dict[str, Endpoint]:
        """The task's APIs by name (the BentoML API's method name)."""

    def check_tensors(self, inputs: dict[str, np.ndarray]) -> None:
        """Refuse model inputs sent directly (the Open Inference Protocol) that the model cannot take, e.g. an id
        beyond its embedding; raise :class:`models.inputs.InvalidInput`. Default: nothing to check."""

    @abstractmethod
    def examples(self, folder: Path) -> dict[str, dict[str, Any]]:
        """A valid request for each endpoint (keyword arguments of its ``prepare``), files written into ``folder``.

        The contract test runs every endpoint on them; the playground and docs can show them.
        """


def example_image(folder: Path, size: tuple[int, int] = (40, 30), name: str = "example.png") -> Path:
    """A small RGB test card (colour bands and a gradient) as PNG in ``folder``, for :meth:`Serving.examples`."""
    from PIL import Image

    w, h = size
    x = np.linspace(0, 255, w, dtype=np.float32)[None, :].repeat(h, 0)
    y = np.linspace(0, 255, h, dtype=np.float32)[:, None].repeat(w, 1)
    rgb = np.stack([x, y, 255 - x], axis=-1).astype(np.uint8)
    path = folder / name
    Image.fromarray(rgb).save(path)
    return path


def check_index_range(name: str, values: np.ndarray, size: int) -> None:
    """Refuse indices of ``name`` outside ``[0, size)`` (an embedding's rows)."""
    from models.inputs import InvalidInput

    if values.size and (values.min() < 0 or values.max() >= size):
        raise InvalidInput("index_out_of_range", f"input {name!r} holds indices outside 0..{size - 1}")


def check_min_size(name: str, images: np.ndarray, minimum: int) -> None:
    """Refuse ``(N, C, H, W)`` images smaller than ``minimum`` pixels either way (a network that pools them away)."""
    from models.inputs import InvalidInput

    if images.shape[-1] < minimum or images.shape[-2] < minimum:
        raise InvalidInput("too_small", f"input {name!r} is {images.shape[-2]}x{images.shape[-1]}; the model takes at least {minimum}x{minimum}")
