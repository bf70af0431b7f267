"""``segment``: CamVid semantic segmentation with the course's U-Net (lesson 3).

Data: ``camvid_tiny`` (sample) or CamVid (real), the same layout:
``images/<stem>.png``, ``labels/<stem>_P.png`` (8-bit class index per pixel),
``codes.txt`` (one class name per line, in index order) and optionally
``valid.txt`` (validation image file names); without it, a seeded random split.

``Void`` pixels (and any label outside ``codes.txt``) are stored as
:data:`IGNORE` in the targets: the loss and the metrics skip them, as the
course's ``acc_camvid`` does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from models.images import (
    ImageSpec,
    broken_report,
    channel_stats,
    image_sizes,
    split_images,
    split_report,
)
from models.maths import softmax
from models.task import Dataset, PromotionPolicy, Spec, Task, TensorSpec, TrainConfig, missing_dataset
from models.tasks.segment.masks import colourise

if TYPE_CHECKING:
    from models.training.recipe import Recipe

IGNORE = 255
"""Target value of pixels the loss and metrics skip (``Void``, unknown codes)."""


@dataclass(frozen=True)
class SegmentConfig(TrainConfig):
    dataset: str = "camvid_tiny"
    arch: str = "resnet18"
    width: float = 1.0
    """Decoder width relative to fast.ai's ``DynamicUnet``."""
    image_size: tuple[int, int] = (96, 128)
    """(height, width) the images are resized to for training and serving."""
    weights: str | None = None
    """Encoder weights (a ResNet state dict, safetensors or ``weights_only`` torch file)."""
    encoder_lr_mult: float = 1.0
    """Encoder learning rate relative to ``lr`` (e.g. 0.1 with trained ``weights``)."""
    flip: bool = True
    """Add horizontally mirrored copies of the training images."""
    valid_pct: float = 0.2
    void: str = "Void"
    """The class name excluded from the loss and the metrics."""


# ---------------------------------------------------------------- data layout


def read_codes(root: Path) -> list[str]:
    return [line.strip() for line in (root / "codes.txt").read_text().splitlines() if line.strip()]


def label_path(root: Path, image: Path) -> Path:
    return root / "labels" / f"{image.stem}_P.png"


def split_items(root: Path, valid_pct: float, seed: int) -> tuple[list[Path], list[Path]]:
    """Images under ``images/``: ``valid.txt`` names the validation ones, else a seeded random split."""
    return split_images(root / "images", root / "valid.txt", valid_pct, seed)


# ------------------------------------------------------------- preprocessing


def preprocess_mask(mask: Image.Image, spec: Spec) -> np.ndarray:
    """Label PNG -> ``uint8`` HW class indices at the spec's size (nearest); Void and unknown -> ``IGNORE``."""
    h, w = spec["image_size"]
    if mask.mode not in ("L", "P"):
        mask = mask.convert("L")
    if mask.size != (w, h):
        mask = mask.resize((w, h), Image.Resampling.NEAREST)
    arr = np.asarray(mask, dtype=np.uint8).copy()
    arr[arr >= len(spec["classes"])] = IGNORE
    if spec.get("void") is not None:
        arr[arr == spec["void"]] = IGNORE
    return arr


# -------------------------------------------------------------------- metrics


def pixel_accuracy(pred: np.ndarray, target: np.ndarray) -> float:
    """Share of correctly labelled pixels among those not ``IGNORE`` (the course's ``acc_camvid``)."""
    keep = target != IGNORE
    return float((pred[keep] == target[keep]).mean()) if keep.any() else float("nan")


def mean_iou(pred: np.ndarray, target: np.ndarray, n_classes: int) -> float:
    """Mean over classes present in the truth or the prediction of intersection / union, ``IGNORE`` skipped."""
    keep = target != IGNORE
    p, t = pred[keep].astype(np.int64), target[keep].astype(np.int64)
    inter = np.bincount(t[p == t], minlength=n_classes)[:n_classes]
    area_p = np.bincount(p, minlength=n_classes)[:n_classes]
    area_t = np.bincount(t, minlength=n_classes)[:n_classes]
    union = area_p + area_t - inter
    present = union > 0
    return float((inter[present] / union[present]).mean()) if present.any() else float("nan")


def _argmax(output: np.ndarray) -> np.ndarray:
    return output.argmax(axis=1).astype(np.uint8)


class Segment(Task):
    name = "segment"
    datasets = ("camvid_tiny",)
    metric_name = "accuracy"
    higher_is_better = True
    config_class = SegmentConfig
    promotion = PromotionPolicy(tolerance=0.01, latency_budget_ms=400.0)
    parity_atol = 1e-4
    parity_rtol = 1e-3
    downloads = {"camvid": "https://s3.amazonaws.com/fast-ai-imagelocal/camvid.tgz"}
    configs = {
        # Lesson 3 on a GPU: full CamVid (701 photos, valid.txt's split) at half size, an ImageNet ResNet-34 encoder (docs/tasks.md)
        "camvid": {
            "dataset": "camvid", "arch": "resnet34", "image_size": (360, 480), "weights": "imagenet", "encoder_lr_mult": 0.1,
            "epochs": 12, "batch_size": 8, "lr": 3e-3, "weight_decay": 0.01, "flip": True,
        },
        "demo": {"epochs": 14, "batch_size": 8, "lr": 3e-3, "weight_decay": 0.01, "arch": "resnet18", "width": 0.25},
        "tiny": {
            "epochs": 1,
            "batch_size": 16,
            "lr": 3e-3,
            "limit": 32,
            "arch": "resnet10",
            "width": 0.125,
            "image_size": (32, 48),
            "flip": False,
        },
    }

    # ------------------------------------------------------------------ data

    def validate(self, data_dir: Path, config: TrainConfig) -> list[str]:
        """Layout, codes (with the Void class when one is named), a mask per image of the same size, decodable files."""
        assert isinstance(config, SegmentConfig)
        root = data_dir / config.dataset
        if not root.is_dir():
            return [missing_dataset(root)]
        problems: list[str] = []
        for need in ("images", "labels"):
            if not (root / need).is_dir():
                problems.append(f"{root / need} does not exist")
        if not (root / "codes.txt").is_file():
            problems.append(f"{root / 'codes.txt'} does not exist")
        if problems:
            return problems
        codes = read_codes(root)
        if len(codes) < 2:
            problems.append(f"codes.txt names {len(codes)} class(es); at least 2 are needed")
        if len(codes) > IGNORE:
            problems.append(f"codes.txt names {len(codes)} classes; at most {IGNORE} fit 8-bit masks")
        try:
            train, valid = split_items(root, config.valid_pct, config.seed)
        except (FileNotFoundError, OSError) as exc:
            return [*problems, str(exc)]
        problems += split_report(train, valid, "image(s)")
        labels = {image: label_path(root, image) for image in train + valid}
        missing = [label.name for label in labels.values() if not label.is_file()]
        sizes, broken = image_sizes([*labels, *(label for label in labels.values() if label.is_file())])
        mismatched = [
            f"{image.name} {sizes[image]} vs {sizes[label]}" for image, label in labels.items() if image in sizes and label in sizes and sizes[image] != sizes[label]
        ]
        if missing:
            problems.append(f"{len(missing)} image(s) have no mask labels/<stem>_P.png, e.g. {missing[:5]}")
        problems += broken_report(broken, "image or mask file(s)")
        if mismatched:
            problems.append(f"{len(mismatched)} mask(s) differ in size from their image, e.g. {mismatched[:3]}")
        return problems

    def load(self, data_dir: Path, config: TrainConfig) -> Dataset:
        assert isinstance(config, SegmentConfig)
        root = data_dir / config.dataset
        codes = read_codes(root)
        train, valid = split_items(root, config.valid_pct, config.seed)
        if config.limit:
            train, valid = train[: config.limit], valid[: config.limit]
        size = tuple(int(s) for s in config.image_size)
        spec: Spec = {
            "image_size": list(size),
            "classes": codes,
            "void": codes.index(config.void) if config.void in codes else None,
        }
        sizing = ImageSpec(size[0], size[1], (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
        photos = {p: sizing.pixels(Image.open(p)) for p in train + valid}
        spec.update(channel_stats(photos[p] for p in train))
        image = ImageSpec.from_spec(spec)

        def arrays(items: list[Path]) -> tuple[np.ndarray, np.ndarray]:
            x = np.stack([image.normalise(photos[p]) for p in items])
            y = np.stack([preprocess_mask(Image.open(label_path(root, p)), spec) for p in items])
            return x, y

        tx, ty = arrays(train)
        vx, vy = arrays(valid)
        if config.flip:
            tx = np.concatenate([tx, tx[..., ::-1]]).copy()
            ty = np.concatenate([ty, ty[..., ::-1]]).copy()
        sizes = np.asarray([Image.open(p).size for p in train], dtype=np.float64)  # the photos' own, before resizing
        extras = {
            "valid_photos": np.stack([photos[p] for p in valid]),
            "valid_names": [p.name for p in valid],
            "drift": {"width": sizes[:, 0], "height": sizes[:, 1]},
        }
        return Dataset((tx,), ty, (vx,), vy, spec, extras)

    # -------------------------------------------------------------- training

    def recipe(self, config: TrainConfig) -> "Recipe":
        from models.tasks.segment.recipe import SegmentRecipe

        return SegmentRecipe(self, config)

    # ------------------------------------------------------------ evaluation

    def metric(self, output: np.ndarray, target: np.ndarray) -> float:
        return pixel_accuracy(_argmax(output), target)

    def extra_metrics(self, output: np.ndarray, target: np.ndarray) -> dict[str, float]:
        return {"mean_iou": mean_iou(_argmax(output), target, output.shape[1])}

    def baseline(self, data: Dataset) -> float:
        """Predict the most frequent (non-Void) training class everywhere."""
        return pixel_accuracy(np.full_like(data.valid_y, self._majority(data)), data.valid_y)

    def extra_baselines(self, data: Dataset, config: TrainConfig) -> dict[str, float]:
        """The majority class's mean IoU, and the accuracy of the most frequent class at each pixel position."""
        majority = np.full_like(data.valid_y, self._majority(data))
        n = len(data.spec["classes"])
        prior = _position_prior(data.train_y, n)
        return {
            "mean_iou": mean_iou(majority, data.valid_y, n),
            "position_prior": pixel_accuracy(np.broadcast_to(prior, data.valid_y.shape), data.valid_y),
        }

    @staticmethod
    def _majority(data: Dataset) -> int:
        counts = np.bincount(data.train_y.ravel(), minlength=IGNORE + 1)
        counts[IGNORE] = 0
        return int(counts.argmax())

    # ------------------------------------------------------------------ ONNX

    def inputs(self, spec: Spec) -> list[TensorSpec]:
        return [TensorSpec("image", "float32", ("batch", 3, "height", "width"))]

    def outputs(self, spec: Spec) -> list[TensorSpec]:
        return [TensorSpec("logits", "float32", ("batch", len(spec["classes"]), "height", "width"))]

    def reference_sizes(self, spec: Spec) -> dict[str, int]:
        h, w = spec["image_size"]
        return {"height": int(h), "width": int(w)}

    def parity_view(self, output: np.ndarray) -> np.ndarray:
        """Class probabilities: what the argmax the service returns is taken from."""
        return softmax(output, axis=1)

    def parity_inputs(self, data: Dataset) -> list[tuple[np.ndarray, ...]]:
        """Batch 1 and 4 at the training size, and batches 1 and 3 at two other (odd) sizes."""
        (x,) = data.valid_x
        h, w = x.shape[-2:]
        crop = x[:3, :, : max(h - 13, 8), : max(w - 27, 8)]
        big = np.pad(x[:2], ((0, 0), (0, 0), (0, h // 3 + 1), (0, w // 4 + 3)), mode="reflect")
        return [(x[:1],), (x[:4],), (np.ascontiguousarray(crop[:1]),), (np.ascontiguousarray(crop),), (big,)]

    # --------------------------------------------------------------- figures

    def figures(self, data: Dataset, output: np.ndarray) -> dict[str, Any]:
        """Photo, truth and prediction side by side for a few validation images."""
        from matplotlib.figure import Figure

        n_classes = len(data.spec["classes"])
        photos = data.extras.get("valid_photos")
        names = data.extras.get("valid_names", [])
        pred = _argmax(output)
        rows = min(4, len(pred))
        fig = Figure(figsize=(9, 2.6 * max(rows, 1)))
        axes = np.atleast_2d(fig.subplots(max(rows, 1), 3, squeeze=False))
        for i in range(rows):
            photo = photos[i] if photos is not None else np.zeros((*pred.shape[1:], 3), dtype=np.uint8)
            acc = pixel_accuracy(pred[i], data.valid_y[i])
            panels = [(photo, names[i] if i < len(names) else "photo"), (colourise(data.valid_y[i], n_classes), "truth"),
                      (colourise(pred[i], n_classes), f"prediction (acc {acc:.2f})")]
            for ax, (img, title) in zip(axes[i], panels):
                ax.imshow(img)
                ax.set_title(title, fontsize=9)
                ax.axis("off")
        fig.suptitle("Validation: photo, truth, prediction (Void black in the truth)")
        fig.tight_layout()
        return {"predictions.png": fig}


def _position_prior(train_y: np.ndarray, n: int) -> np.ndarray:
    """The most frequent non-ignored class at each pixel position of the training masks."""
    counts = np.zeros((n, *train_y.shape[1:]), dtype=np.int32)
    rows, cols = np.indices(train_y.shape[1:])
    for y in train_y:
        keep = y != IGNORE
        np.add.at(counts, (y[keep].astype(np.int64), rows[keep], cols[keep]), 1)
    return counts.argmax(axis=0).astype(np.uint8)


TASK = Segment()
