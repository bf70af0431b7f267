"""``classify``: image classification with a torchvision ResNet (lessons 1-2).

Sample data: ``mnist_tiny`` (``train/<class>/*.png``, ``valid/<class>/*.png``).
Real data: Oxford-IIIT Pets (``images/<breed>_<n>.jpg``, seeded split).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from models.images import IMAGE_SUFFIXES, ImageSpec, broken_report, channel_stats, image_sizes
from models.task import Dataset, PromotionPolicy, Spec, Task, TensorSpec, TrainConfig, missing_dataset

if TYPE_CHECKING:
    from models.training.recipe import Recipe

PETS_NAME = re.compile(r"^(.+)_\d+\.jpg$")
MIN_PER_CLASS = 5
Items = list[tuple[Path, str]]


@dataclass(frozen=True)
class ClassifyConfig(TrainConfig):
    dataset: str = "mnist_tiny"
    arch: str = "resnet18"
    image_size: int = 28
    weights: str | None = None
    """Backbone weights: ``imagenet`` (torchvision's, fetched once into the cache) or a local safetensors or ``weights_only`` torch file."""
    freeze_epochs: int = 0
    """fastai's ``fine_tune``: epochs with the pretrained body frozen before ``epochs`` of everything (0: one plain fit)."""
    lr_mult: float = 100.0
    """After unfreezing, the stem trains at ``lr / lr_mult``, the head at ``lr`` (fastai's ``fine_tune`` default)."""
    valid_pct: float = 0.2
    """Validation share for folders without a ``valid/`` split (Pets)."""


def folder_items(root: Path) -> tuple[Items, Items]:
    """``train/<class>/*`` and ``valid/<class>/*`` image folders (mnist_tiny, ImageNet style)."""

    def items(split: Path) -> Items:
        return sorted(
            (p, d.name)
            for d in split.iterdir()
            if d.is_dir()
            for p in d.iterdir()
            if p.suffix.lower() in IMAGE_SUFFIXES
        )

    return items(root / "train"), items(root / "valid")


def pets_items(images: Path, valid_pct: float, seed: int) -> tuple[Items, Items]:
    """Oxford-IIIT Pets: the label is the file name up to ``_<n>.jpg``; seeded random split."""
    items = sorted((p, m.group(1)) for p in images.iterdir() if (m := PETS_NAME.match(p.name)))
    if not items:
        raise FileNotFoundError(f"no '<label>_<n>.jpg' images in {images}")
    random.Random(seed).shuffle(items)
    n_valid = int(round(len(items) * valid_pct))
    return sorted(items[n_valid:]), sorted(items[:n_valid])


def split_items(root: Path, config: ClassifyConfig) -> tuple[Items, Items]:
    if (root / "train").is_dir() and (root / "valid").is_dir():
        return folder_items(root)
    images = root / "images" if (root / "images").is_dir() else root
    return pets_items(images, config.valid_pct, config.seed)


class Classify(Task):
    name = "classify"
    datasets = ("mnist_tiny",)
    metric_name = "accuracy"
    higher_is_better = True
    config_class = ClassifyConfig
    promotion = PromotionPolicy(tolerance=0.005, latency_budget_ms=50.0)
    downloads = {"oxford-iiit-pet": "https://s3.amazonaws.com/fast-ai-imageclas/oxford-iiit-pet.tgz"}
    configs = {
        "demo": {"epochs": 5, "batch_size": 64, "lr": 3e-3, "weight_decay": 0.01},
        # Lesson 1 on a GPU: Oxford-IIIT Pets' 37 breeds, an ImageNet ResNet-34 at 224 px, fine_tune (docs/tasks.md)
        "pets": {
            "dataset": "oxford-iiit-pet", "arch": "resnet34", "image_size": 224, "weights": "imagenet",
            "freeze_epochs": 1, "epochs": 2, "batch_size": 64, "lr": 2e-3, "weight_decay": 0.01,
        },
        "tiny": {"epochs": 1, "batch_size": 16, "lr": 3e-3, "limit": 48},
    }

    def validate(self, data_dir: Path, config: TrainConfig) -> list[str]:
        """Class folders (or Pets names), at least two classes, enough images, every image decodable."""
        assert isinstance(config, ClassifyConfig)
        root = data_dir / config.dataset
        if not root.is_dir():
            return [missing_dataset(root)]
        try:
            train, valid = split_items(root, config)
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
        return problems + broken_report(image_sizes(p for p, _ in train + valid)[1])

    def absorb(self, data_dir: Path, labelled: list[tuple[Any, list[Any]]]) -> int:
        """Each captured image goes into ``train/<its true class>/`` (a folder dataset such as mnist_tiny)."""
        root = data_dir / self.datasets[0] / "train"
        if not root.is_dir():
            raise FileNotFoundError(f"{root} is missing: captured images are added to the folder dataset's train/<class>/")
        for captured, (label,) in labelled:
            (root / label).mkdir(exist_ok=True)
            with Image.open(captured.file("image")) as img:
                img.convert("L" if img.mode in ("L", "1") else "RGB").save(root / label / f"captured-{captured.request_id}.png")
        return len(labelled)

    def load(self, data_dir: Path, config: TrainConfig) -> Dataset:
        assert isinstance(config, ClassifyConfig)
        root = data_dir / config.dataset
        train, valid = split_items(root, config)
        if config.limit:
            rng = random.Random(config.seed)
            train = rng.sample(train, min(config.limit, len(train)))
            valid = rng.sample(valid, min(config.limit, len(valid)))
        classes = sorted({label for _, label in train})
        if len(classes) < 2:
            raise ValueError(f"{root}: need at least two classes, found {classes}")
        size: Spec = {"image_size": config.image_size, "mean": [0.0] * 3, "std": [1.0] * 3}
        sizing = ImageSpec.from_spec(size)
        spec: Spec = {"image_size": config.image_size, "classes": classes}
        spec.update(channel_stats(sizing.pixels(Image.open(p)) for p, _ in train))
        image = ImageSpec.from_spec(spec)
        index = {c: i for i, c in enumerate(classes)}
        valid = [(p, lab) for p, lab in valid if lab in index]

        def arrays(items: Items) -> tuple[np.ndarray, np.ndarray]:
            x = np.stack([image.preprocess(Image.open(p)) for p, _ in items])
            return x, np.asarray([index[lab] for _, lab in items], dtype=np.int64)

        tx, ty = arrays(train)
        vx, vy = arrays(valid)
        sizes = np.asarray([Image.open(p).size for p, _ in train], dtype=np.float64)  # the photos' own, before resizing
        return Dataset((tx,), ty, (vx,), vy, spec, {"drift": {"width": sizes[:, 0], "height": sizes[:, 1]}})

    def recipe(self, config: TrainConfig) -> "Recipe":
        from models.tasks.classify.recipe import ClassifyRecipe

        return ClassifyRecipe(self, config)

    def metric(self, output: np.ndarray, target: np.ndarray) -> float:
        return float((output.argmax(axis=1) == target).mean())

    def baseline(self, data: Dataset) -> float:
        """Always predict the most frequent training class."""
        majority = np.bincount(data.train_y).argmax()
        return float((data.valid_y == majority).mean())

    def inputs(self, spec: Spec) -> list[TensorSpec]:
        image = ImageSpec.from_spec({"mean": [0.0] * 3, "std": [1.0] * 3, **spec})
        return [TensorSpec("image", "float32", ("batch", 3, image.height, image.width))]

    def outputs(self, spec: Spec) -> list[TensorSpec]:
        """The logits and, unless the spec says ``cam: false`` (an imported fastai Learner's head), the activation maps."""
        k = len(spec["classes"])
        logits = TensorSpec("logits", "float32", ("batch", k))
        return [logits] if spec.get("cam") is False else [logits, TensorSpec("cam", "float32", ("batch", k, "cam_height", "cam_width"))]

    def reference_sizes(self, spec: Spec) -> dict[str, int]:
        """The activation maps' size: the ResNet's stride of 32, rounded up."""
        if spec.get("cam") is False:
            return {}
        image = ImageSpec.from_spec({"mean": [0.0] * 3, "std": [1.0] * 3, **spec})
        return {"cam_height": -(-image.height // 32), "cam_width": -(-image.width // 32)}

    def figures(self, data: Dataset, output: np.ndarray) -> dict[str, Any]:
        """The confusion matrix; the recipe adds the top losses with their heatmaps."""
        from models.plots import confusion_matrix

        return {"confusion_matrix.png": confusion_matrix(data.valid_y, output.argmax(axis=1), data.spec["classes"])}


TASK = Classify()
