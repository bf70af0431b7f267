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
    features: dict[str, float] = field(default_factory=dict)
    """Drift features the model inputs no longer show (an image's size before resizing); training gives the same
    ones in ``Dataset.extras["drift"]`` (:mod:`models.drift`)."""

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
    rows_alone: bool = False
    """Set per model version (its spec's ``rows_alone``: dynamic INT8): the model runs each row in a call of its
    own, so a request's rows need not share a shape, and a row's answer may depend on nothing but that row
    (for text: not on the lengths of the texts sent with it)."""

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

    # ------------------------------------------------------- the live loop (docs/operating.md)

    shadow_measure: ClassVar[str] = "mad"
    """How :meth:`agreement` compares two answers: a key of :data:`MEASURES`."""
    canary_p99_ms: ClassVar[float] = 1000.0
    """The challenger's p99 latency budget on canary traffic; past it the canary is rolled back."""
    canary_max_error_rate: ClassVar[float] = 0.05
    """The share of failed challenger requests on canary traffic past which the canary is rolled back."""
    feedback: ClassVar[dict[str, str]] = {}
    """Endpoints that take ``POST /feedback`` for their requests -> what the outcome is (for the error messages)."""

    def agreement(self, endpoint: str, champion: Any, challenger: Any) -> float | None:
        """How far the challenger's answer to a request agrees with the champion's, in :attr:`shadow_measure`;
        ``None`` when the two cannot be compared. Default: none can."""
        return None

    def request_key(self, endpoint: str, request: dict[str, Any]) -> str | None:
        """What keeps a caller on one side of a canary (e.g. the user id); ``None``: the ``X-Request-Key`` header."""
        return None

    def observe(self, inputs: Arrays, names: Sequence[str]) -> dict[str, np.ndarray]:
        """Drift features of a batch of model inputs, one value per row (:mod:`models.drift`).

        The same function profiles the training split at registration and the live requests in the service.
        Default: a column of a 1- or 2-D input is a feature (integers categorical), images (N, C, H, W) give
        their channel means, brightness and contrast.
        """
        out: dict[str, np.ndarray] = {}
        for name, x in zip(names, inputs):
            x = np.asarray(x)
            if x.ndim == 4 and x.shape[1] == 3:
                flat = x.reshape(len(x), 3, -1)
                for c, colour in enumerate(("red", "green", "blue")):
                    out[colour] = flat[:, c].mean(axis=1)
                out["brightness"] = flat.mean(axis=(1, 2))
                out["contrast"] = flat.reshape(len(x), -1).std(axis=1)
            elif x.ndim == 1:
                out[name] = x
            elif x.ndim == 2:
                for i, column in enumerate(self.column_names(name, x.shape[1])):
                    out[column] = x[:, i]
        return out

    def column_names(self, name: str, width: int) -> list[str]:
        """The features of the columns of 2-D input ``name`` (default ``name[i]``)."""
        return [f"{name}[{i}]" for i in range(width)]

    def categorical(self, names: Sequence[str], inputs: Arrays) -> frozenset[str]:
        """Which features of :meth:`observe` are categorical: those from integer inputs."""
        kinds = {name: np.asarray(x).dtype.kind in "iu" for name, x in zip(names, inputs)}
        cats = set()
        for name, x in zip(names, inputs):
            if kinds[name] and np.asarray(x).ndim == 1:
                cats.add(name)
            elif kinds[name] and np.asarray(x).ndim == 2:
                cats.update(self.column_names(name, np.asarray(x).shape[1]))
        return frozenset(cats)

    def outcome(self, endpoint: str, value: Any, request: dict[str, Any]) -> list[Any]:
        """Check the true outcome of a captured request of ``endpoint`` (``POST /feedback``): one value per item
        of the request, raising :class:`models.inputs.InvalidInput`. Default: this task takes no feedback."""
        from models.inputs import InvalidInput

        raise InvalidInput("no_feedback", f"{self.task} takes no feedback" + (f" for {endpoint}" if self.feedback else "") + feedback_hint(self.feedback))


MEASURES: dict[str, tuple[str, bool]] = {
    "top1": ("top-1 agreement", True),
    "iou": ("mean IoU between the masks", True),
    "mad": ("mean absolute difference", False),
    "relative_mad": ("mean absolute difference relative to the champion's", False),
    "psnr": ("PSNR between the outputs, dB", True),
}
"""Shadow measures: name -> (what it is, whether higher is closer agreement)."""
ONLINE_LIMITS = {"top1": 0.9, "iou": 0.8, "mad": 0.5, "relative_mad": 0.1, "psnr": 30.0}
"""The online gate's default limit per measure: at least (higher is closer) or at most (lower is)."""


def feedback_hint(feedback: dict[str, str]) -> str:
    return "; feedback is taken for " + ", ".join(f"/{e} ({what})" for e, what in feedback.items()) if feedback else ""


def per_item(value: Any, count: int, check: Callable[[Any, int], Any]) -> list[Any]:
    """``value`` as one checked outcome per item: a list of ``count``, or one value when ``count`` is 1."""
    from models.inputs import InvalidInput

    values = value if isinstance(value, list) else [value]
    if len(values) != count:
        raise InvalidInput("length_mismatch", f"outcome has {len(values)} value(s); the request had {count} item(s), one outcome each")
    return [check(v, i) for i, v in enumerate(values)]


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
