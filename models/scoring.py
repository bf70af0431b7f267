"""A model version's metric on the platform's validation split, each model read through its own spec.

Used where two versions must be compared on the same data although their
specs (vocabularies, statistics, id maps) differ: the promotion gate when the
candidate and the champion were measured on different data, and the fastai
import. The validation items are read raw and preprocessed by each model's own
serving hooks, with ONNX Runtime (no PyTorch).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from models.onnx_model import OnnxModel
from models.registry import get_serving, get_task
from models.serving import Limits

SCORED = ("classify", "recommend", "sales", "segment", "sentiment")
"""The tasks :func:`platform_metric` can score (``superres`` cannot yet)."""


def platform_metric(model: OnnxModel, task: str, data_dir: Path, config_name: str = "demo") -> tuple[float | None, str]:
    """The task's metric of the imported model on the platform's validation split, and what it was measured on."""
    t = get_task(task)
    config = t.config(config_name)
    spec = model.spec["preprocess"]
    if task == "classify":
        from models.images import ImageSpec
        from models.tasks.classify import split_items

        _, valid = split_items(data_dir / config.dataset, config)  # type: ignore[attr-defined, arg-type]
        index = {c: i for i, c in enumerate(spec["classes"])}
        items = [(p, index[label]) for p, label in valid if label in index]
        if not items:
            return None, f"no validation image of {config.dataset} has one of the Learner's classes"  # type: ignore[attr-defined]
        image = ImageSpec.from_spec(spec)
        logits = np.concatenate([model.run(np.stack([image.preprocess(Image.open(p)) for p, _ in items[i : i + 64]])) for i in range(0, len(items), 64)])
        return t.metric(logits, np.asarray([y for _, y in items])), f"{len(items)} validation images of {config.dataset}"  # type: ignore[attr-defined]
    if task == "segment":
        from models.images import ImageSpec
        from models.tasks.segment import label_path, preprocess_mask, split_items

        root = data_dir / config.dataset  # type: ignore[attr-defined]
        _, valid = split_items(root, config.valid_pct, config.seed)
        image = ImageSpec.from_spec(spec)
        x = np.stack([image.preprocess(Image.open(p)) for p in valid])
        y = np.stack([preprocess_mask(Image.open(label_path(root, p)), spec) for p in valid])
        logits = np.concatenate([model.run(x[i : i + 8]) for i in range(0, len(x), 8)])
        return t.metric(logits, y), f"{len(valid)} validation photos of {config.dataset}"  # type: ignore[attr-defined]
    if task == "sales":
        from models.tasks.sales.course import platform_spec
        from models.tasks.sales.serving import SalesRecord

        _, _, valid = platform_spec(data_dir, config_name)
        records = [
            SalesRecord(Store=int(r.Store), Date=str(r.Date.date()), Open=int(r.Open), Promo=int(r.Promo), StateHoliday=str(r.StateHoliday), SchoolHoliday=int(r.SchoolHoliday))
            for r in valid.itertuples()
        ]
        hooks = get_serving(task)(spec, Limits(max_records=len(records)))
        prepared = hooks.endpoints()["sales"].prepare(records=records)
        outputs = np.concatenate([model.run(*group) for group in prepared.inputs])
        return t.metric(outputs, np.log(valid["Sales"].to_numpy(dtype=np.float64))), f"{len(records)} validation store-days of {config.dataset}"  # type: ignore[attr-defined]
    if task == "sentiment":
        from models.tasks.sentiment import read_texts

        texts, labels, is_valid, _ = read_texts(data_dir / config.dataset)  # type: ignore[attr-defined]
        index = {label: i for i, label in enumerate(spec["labels"])}
        rows = [(text, index[label]) for text, label, v in zip(texts, labels, is_valid) if v and label in index]
        if not rows:
            return None, f"no validation text of {config.dataset} has one of the Learner's labels"  # type: ignore[attr-defined]
        hooks = get_serving(task)(spec, Limits(max_texts=len(rows)))
        prepared = hooks.endpoints()["sentiment"].prepare(texts=[text for text, _ in rows])
        logits = np.concatenate([model.run(*group) for group in prepared.inputs])
        return t.metric(logits, np.asarray([y for _, y in rows])), f"{len(rows)} validation reviews of {config.dataset}"  # type: ignore[attr-defined]
    if task == "recommend":
        from models.tasks.recommend import IdMaps

        data = t.load(data_dir, config)
        valid = data.extras["valid"]
        users, movies = IdMaps(spec).encode(valid["user"].to_numpy(), valid["movie"].to_numpy())
        return t.metric(model.run(users, movies), valid["rating"].to_numpy()), f"{len(valid)} validation ratings of {config.dataset}"  # type: ignore[attr-defined]
    return None, f"no metric for imported {task} models"
