"""The import's checks of what the child wrote, with the services' own code (no PyTorch, no fastai).

The served path answers each probe (the task's serving hooks on ONNX Runtime)
and must agree with fastai's answer; :mod:`models.scoring` measures the task's
metric on the platform's validation split.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from models.errors import GuardFailed
from models.fastai_import import PARITY_ATOL
from models.onnx_model import OnnxModel
from models.registry import get_serving, get_task
from models.serving import Limits
from models.task import Spec


class ServedParityError(GuardFailed, RuntimeError):
    """The served answers differ from fastai's beyond the tolerance: nothing is registered."""


def _answer(model: OnnxModel, task: str, endpoint: str, request: dict[str, Any]) -> Any:
    hooks = get_serving(task)(model.spec["preprocess"], Limits())
    ep = hooks.endpoints()[endpoint]
    prepared = ep.prepare(**request)
    outputs = [model.run(*group) for group in prepared.inputs]
    return ep.answer(prepared, outputs, model.version)


def tokenizer_difference(model: OnnxModel, text: str, fastai_tokens: list[str]) -> str | None:
    """Where the service's tokens of ``text`` differ from fastai's (spaCy's split), or None when they are the same."""
    import difflib

    from models.text import Numericalizer, encode

    spec = model.spec["preprocess"]
    numericalizer = Numericalizer(spec["vocab"])
    ours = numericalizer.tokens(encode(text, numericalizer, int(spec["max_tokens"]))[0])
    if ours == fastai_tokens:
        return None
    def shown(tokens: list[str]) -> str:
        return " ".join(repr(t)[1:-1] for t in tokens) or "(none)"

    changes = [
        f"{shown(fastai_tokens[a0:a1])} -> {shown(ours[b0:b1])}"
        for op, a0, a1, b0, b1 in difflib.SequenceMatcher(a=fastai_tokens, b=ours, autojunk=False).get_opcodes()
        if op != "equal"
    ]
    return f"{len(changes)} difference(s) in {len(fastai_tokens)} tokens (fastai -> served): {'; '.join(changes)}"


def served_parity(model: OnnxModel, task: str, probes: list[dict[str, Any]], folder: Path, atol: float = PARITY_ATOL) -> tuple[float, list[str]]:
    """The largest difference between the served answers and fastai's over the probes, and notes on where the served
    preprocessing differs from fastai's (sentiment: the tokens). Raises past ``atol`` or when the top class differs,
    except on a text whose tokens differ, which is noted with its difference instead."""
    worst = 0.0
    notes: list[str] = []
    for probe in probes:
        request = dict(probe["request"])
        if task == "sales":
            from models.tasks.sales.serving import SalesRecord

            request["records"] = [SalesRecord(**r) for r in request["records"]]
        if "image" in request:
            request["image"] = folder / request["image"]
            if not request["image"].resolve().is_relative_to(folder.resolve()):
                raise ServedParityError(f"a probe names a file outside the import's folder: {probe['request']['image']}")
        answer = _answer(model, task, probe["endpoint"], request)
        expected = probe["expected"]
        if task == "classify":
            got = {p.label: p.probability for p in answer.predictions}
            if set(got) != set(expected):
                raise ServedParityError(f"the served classes {sorted(got)} are not fastai's {sorted(expected)}")
            diff = max(abs(got[k] - float(v)) for k, v in expected.items())
            top = max(expected, key=lambda k: float(expected[k]))
            if answer.predictions[0].label != top and abs(float(expected[top]) - got[answer.predictions[0].label]) > atol:
                raise ServedParityError(f"served top class {answer.predictions[0].label!r}, fastai's {top!r}")
        elif task == "sales":
            got = np.log(np.asarray([p.sales for p in answer.predictions], dtype=np.float64))
            want = np.log(np.asarray(expected, dtype=np.float64))
            if got.shape != want.shape:
                raise ServedParityError(f"{len(got)} served forecasts for {len(want)} of fastai's")
            diff = float(np.max(np.abs(got - want)))  # in log sales: a relative difference
        elif task == "sentiment":
            served = answer.predictions[0]
            probabilities = expected["probabilities"]
            diff = abs(served.probability - float(probabilities[served.label]))
            top = max(probabilities, key=lambda k: float(probabilities[k]))
            differs = tokenizer_difference(model, request["texts"][0], expected["fastai_tokens"])
            if differs is not None:
                notes.append(f"{request['texts'][0][:60]!r}: {differs}; probability off by {diff:.3g}{'' if served.label == top else ', another label'}")
                continue
            if served.label != top:
                raise ServedParityError(f"served label {served.label!r}, fastai's {top!r} for {request['texts'][0][:60]!r}")
        elif task == "segment":
            mask_file = folder / expected["mask"]
            if not mask_file.resolve().is_relative_to(folder.resolve()):
                raise ServedParityError(f"a probe names a file outside the import's folder: {expected['mask']}")
            want = np.load(mask_file, allow_pickle=False)
            got = decode_mask(answer.mask_png)
            if got.shape != want.shape:
                raise ServedParityError(f"served mask {got.shape}, fastai's {want.shape}")
            diff = float(np.mean(got != want))  # the share of pixels given another class (argmax ties of float noise)
        elif task == "recommend":
            got = np.asarray([r.rating for r in answer.ratings], dtype=np.float64)
            want = np.asarray(expected, dtype=np.float64)
            if got.shape != want.shape:
                raise ServedParityError(f"{len(got)} served ratings for {len(want)} of fastai's")
            diff = float(np.max(np.abs(got - want))) if got.size else 0.0
        else:
            raise ServedParityError(f"no served-parity check for task {task!r}")
        if diff > atol:
            raise ServedParityError(f"the served answer differs from fastai's by {diff:.3g} (tolerance {atol}) on {probe['endpoint']} {probe['request']}")
        worst = max(worst, diff)
    return worst, notes


def decode_mask(b64: str) -> np.ndarray:
    import base64
    import io

    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))), dtype=np.uint8)


def complete_spec(task: str, spec: Spec, data_dir: Path, config_name: str = "demo") -> Spec:
    """What the Learner cannot know, from the platform's data: for ``recommend``, who rated what, and the popular
    movies (a ``.pkl`` carries no training rows)."""
    if task != "recommend":
        return spec
    from models.tasks.recommend import popular_and_rated, read_ratings

    config = get_task(task).config(config_name)
    df = read_ratings(data_dir / config.dataset)  # type: ignore[attr-defined]
    popular, rated = popular_and_rated(df[df["movie"].isin(set(spec["movies"]))], df, config.n_popular)  # type: ignore[attr-defined]
    return {**spec, "global_mean": float(df["rating"].mean()), "popular": popular, "rated": rated}
