"""``classify``: image classification with a torchvision ResNet (lessons 1-2).

Sample data: ``mnist_tiny`` (``train/<class>/*.png``, ``valid/<class>/*.png``).
Real data: Oxford-IIIT Pets (``images/<breed>_<n>.jpg``, seeded split).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torchvision
from PIL import Image
from torch import nn
from torch.nn import functional as F

from models.task import Dataset, PromotionPolicy, Spec, Task, TensorSpec, TrainConfig
from models.weights import load_weights

PETS_NAME = re.compile(r"^(.+)_\d+\.jpg$")
MIN_PER_CLASS = 5
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}


@dataclass(frozen=True)
class ClassifyConfig(TrainConfig):
    dataset: str = "mnist_tiny"
    arch: str = "resnet18"
    image_size: int = 28
    weights: str | None = None
    """Path to backbone weights (safetensors or a ``weights_only`` torch file)."""
    valid_pct: float = 0.2
    """Validation share for folders without a ``valid/`` split (Pets)."""


def folder_items(root: Path) -> tuple[list[tuple[Path, str]], list[tuple[Path, str]]]:
    """``train/<class>/*`` and ``valid/<class>/*`` image folders (mnist_tiny, ImageNet style)."""

    def items(split: Path) -> list[tuple[Path, str]]:
        return sorted(
            (p, d.name)
            for d in split.iterdir()
            if d.is_dir()
            for p in d.iterdir()
            if p.suffix.lower() in IMAGE_SUFFIXES
        )

    return items(root / "train"), items(root / "valid")


def pets_items(images: Path, valid_pct: float, seed: int) -> tuple[list[tuple[Path, str]], list[tuple[Path, str]]]:
    """Oxford-IIIT Pets: the label is the file name up to ``_<n>.jpg``; seeded random split."""
    items = sorted((p, m.group(1)) for p in images.iterdir() if (m := PETS_NAME.match(p.name)))
    if not items:
        raise FileNotFoundError(f"no '<label>_<n>.jpg' images in {images}")
    random.Random(seed).shuffle(items)
    n_valid = int(round(len(items) * valid_pct))
    return sorted(items[n_valid:]), sorted(items[:n_valid])


def preprocess(img: Image.Image, spec: Spec) -> np.ndarray:
    """PIL image -> normalised float32 CHW array. Training and serving both call this."""
    size = spec["image_size"]
    img = img.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
    arr = np.asarray(img, dtype=np.float32) / 255.0
    mean = np.asarray(spec["mean"], dtype=np.float32)
    std = np.asarray(spec["std"], dtype=np.float32)
    return ((arr - mean) / std).transpose(2, 0, 1).copy()


def top_k(logits: np.ndarray, spec: Spec, k: int) -> list[dict[str, float | str]]:
    """Logits of one image -> the ``k`` most probable classes with probabilities."""
    z = logits - logits.max()
    probs = np.exp(z) / np.exp(z).sum()
    order = np.argsort(-probs)[: max(1, min(k, len(probs)))]
    return [{"label": spec["classes"][i], "probability": float(probs[i])} for i in order]


class Classify(Task):
    name = "classify"
    datasets = ("mnist_tiny",)
    metric_name = "accuracy"
    higher_is_better = True
    config_class = ClassifyConfig
    promotion = PromotionPolicy(tolerance=0.005, latency_budget_ms=50.0)
    configs = {
        "demo": {"epochs": 5, "batch_size": 64, "lr": 3e-3, "weight_decay": 0.01},
        "tiny": {"epochs": 1, "batch_size": 16, "lr": 3e-3, "limit": 48},
    }

    def validate(self, data_dir: Path, config: TrainConfig) -> list[str]:
        """Class folders (or Pets names), at least two classes, enough images, every image decodable."""
        assert isinstance(config, ClassifyConfig)
        root = data_dir / config.dataset
        if not root.is_dir():
            return [f"{root} does not exist"]
        try:
            train, valid = _split_items(root, config)
        except (FileNotFoundError, OSError) as exc:
            return [str(exc)]
        problems = []
        classes = {label for _, label in train}
        if len(classes) < 2:
            problems.append(f"training data has {len(classes)} class(es); at least 2 are needed")
        for label in sorted(classes):
            n = sum(1 for _, lab in train if lab == label)
            if n < MIN_PER_CLASS:
                problems.append(f"class {label!r} has {n} training images; at least {MIN_PER_CLASS} are needed")
        if not valid:
            problems.append("the validation split is empty")
        unknown = sorted({lab for _, lab in valid} - classes)
        if unknown:
            problems.append(f"validation classes never seen in training: {unknown}")
        broken = []
        for path, _ in train + valid:
            try:
                with Image.open(path) as img:
                    img.verify()
            except Exception:  # any decoder error means the file is unusable
                broken.append(path.name)
        if broken:
            problems.append(f"{len(broken)} image(s) do not decode, e.g. {broken[:5]}")
        return problems

    def load(self, data_dir: Path, config: TrainConfig) -> Dataset:
        assert isinstance(config, ClassifyConfig)
        root = data_dir / config.dataset
        train, valid = _split_items(root, config)
        if config.limit:
            rng = random.Random(config.seed)
            train = rng.sample(train, min(config.limit, len(train)))
            valid = rng.sample(valid, min(config.limit, len(valid)))
        classes = sorted({label for _, label in train})
        if len(classes) < 2:
            raise ValueError(f"{root}: need at least two classes, found {classes}")
        spec: Spec = {"image_size": config.image_size, "classes": classes}
        spec.update(_channel_stats([p for p, _ in train], config.image_size))
        index = {c: i for i, c in enumerate(classes)}
        valid = [(p, lab) for p, lab in valid if lab in index]

        def arrays(items: list[tuple[Path, str]]) -> tuple[np.ndarray, np.ndarray]:
            x = np.stack([preprocess(Image.open(p), spec) for p, _ in items])
            return x, np.asarray([index[lab] for _, lab in items], dtype=np.int64)

        tx, ty = arrays(train)
        vx, vy = arrays(valid)
        return Dataset((tx,), ty, (vx,), vy, spec)

    def build(self, spec: Spec, config: TrainConfig) -> nn.Module:
        assert isinstance(config, ClassifyConfig)
        builder = getattr(torchvision.models, config.arch)
        net = builder(weights=None, num_classes=len(spec["classes"]))
        if config.weights:
            state = {k: v for k, v in load_weights(Path(config.weights)).items() if not k.startswith("fc.")}
            net.load_state_dict(state, strict=False)
        return net

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(output, target)

    def metric(self, output: np.ndarray, target: np.ndarray) -> float:
        return float((output.argmax(axis=1) == target).mean())

    def baseline(self, data: Dataset) -> float:
        """Always predict the most frequent training class."""
        majority = np.bincount(data.train_y).argmax()
        return float((data.valid_y == majority).mean())

    def inputs(self, spec: Spec) -> list[TensorSpec]:
        s = spec["image_size"]
        return [TensorSpec("image", "float32", ("batch", 3, s, s))]

    def outputs(self, spec: Spec) -> list[TensorSpec]:
        return [TensorSpec("logits", "float32", ("batch", len(spec["classes"])))]

    def figures(self, data: Dataset, output: np.ndarray) -> dict[str, object]:
        from models.plots import confusion_matrix, image_grid

        classes = data.spec["classes"]
        pred = output.argmax(axis=1)
        probs = _softmax(output)
        wrong = np.flatnonzero(pred != data.valid_y)
        wrong = wrong[np.argsort(-probs[wrong, pred[wrong]])][:9]
        images = [_denormalise(data.valid_x[0][i], data.spec) for i in wrong]
        titles = [f"pred {classes[pred[i]]} ({probs[i, pred[i]]:.2f})\ntrue {classes[data.valid_y[i]]}" for i in wrong]
        return {
            "confusion_matrix.png": confusion_matrix(data.valid_y, pred, classes),
            "top_errors.png": image_grid(images, titles, "Most confident errors"),
        }


def _split_items(root: Path, config: ClassifyConfig) -> tuple[list[tuple[Path, str]], list[tuple[Path, str]]]:
    if (root / "train").is_dir() and (root / "valid").is_dir():
        return folder_items(root)
    images = root / "images" if (root / "images").is_dir() else root
    return pets_items(images, config.valid_pct, config.seed)


def _softmax(x: np.ndarray) -> np.ndarray:
    z = np.exp(x - x.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def _denormalise(x: np.ndarray, spec: Spec) -> np.ndarray:
    img = x.transpose(1, 2, 0) * np.asarray(spec["std"]) + np.asarray(spec["mean"])
    return np.clip(img, 0, 1)


def _channel_stats(paths: list[Path], size: int) -> dict[str, list[float]]:
    """Per-channel mean and std of the training images at the model's input size."""
    total = np.zeros(3)
    total_sq = np.zeros(3)
    count = 0
    for p in paths:
        arr = np.asarray(Image.open(p).convert("RGB").resize((size, size), Image.Resampling.BILINEAR), dtype=np.float64) / 255.0
        total += arr.sum(axis=(0, 1))
        total_sq += (arr**2).sum(axis=(0, 1))
        count += arr.shape[0] * arr.shape[1]
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 1e-12))
    return {"mean": [round(float(m), 6) for m in mean], "std": [round(float(s), 6) for s in np.maximum(std, 1e-3)]}


TASK = Classify()
