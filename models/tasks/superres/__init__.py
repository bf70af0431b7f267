"""``superres``: super-resolution (lesson 7), 2x by default.

Data: high-resolution photos (``camvid_tiny/images`` here, Oxford-IIIT Pets on
real runs), resized and centre-cropped to ``hr_size``; inputs are made from them
by the course's crappifier (:mod:`models.crappify`): downscale, a number drawn
on the image, JPEG at a random quality, seeded. Validation inputs are crappified
*without* the number (the bar); the same inputs with the number are scored
separately after training.

Model: the network sees the input's luminance only and predicts a residual
that is added to every channel of the bicubically upscaled input (adding to
R, G and B alike is adding to Y and leaving the chroma bicubic). So colours
come from bicubic upscaling and cannot drift on photos unlike the training
ones, and an untrained residual is plain bicubic. The residual is either the
course's U-Net (:class:`models.unet.DynamicUnet` with a pixel-shuffle upscale,
ICNR initialised) or a small residual pixel-shuffle network (``resps``).

Loss: pixel L1 plus ``ssim_weight`` x (1 - SSIM); with ``feature_weights`` (a
VGG16 state dict, safetensors or ``weights_only`` torch file) the course's
feature loss instead: pixel L1 plus L1 of VGG16 features and Gram matrices.
The spec records which loss was used.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from models.crappify import crappify, item_seed
from models.images import broken_report, image_sizes, split_images, split_report
from models.task import Dataset, PromotionPolicy, Spec, Task, TensorSpec, TrainConfig
from models.tasks.superres.quality import LUMA, bicubic, psnr, ssim, to_array, to_uint8
from models.tasks.superres.sources import varied_images

if TYPE_CHECKING:
    from models.training.recipe import Recipe


@dataclass(frozen=True)
class SuperresConfig(TrainConfig):
    dataset: str = "camvid_tiny"
    folder: str = "images"
    """Folder of high-resolution photos inside the dataset (``images`` for both camvid_tiny and Pets)."""
    arch: str = "unet"
    """``unet`` (the course's U-Net) or ``resps`` (residual pixel-shuffle network)."""
    encoder: str = "resnet18"
    width: float = 1.0
    """U-Net decoder width relative to fast.ai's; ``resps`` feature channels = 64 x width."""
    blocks: int = 6
    """Residual blocks of ``resps``."""
    res_scale: float = 0.2
    """``resps``: each residual block's output is scaled by this before it is added (EDSR)."""
    residual_init: float = 1.0
    """Scale of the last layer's initial weights: small starts the model close to plain bicubic."""
    max_harm_db: float | None = 0.05
    """Fail the run when the model is this much worse than bicubic on any image from another source, or not
    better on average (:func:`~models.tasks.superres.sources.check_no_harm`; None: no check)."""
    synthetic: int = 0
    """Synthetic images unlike street photos (gradients, flat colours, bars, strokes) added to the training photos."""
    synthetic_seed: int = 1
    """The seed of those images (none of them is one of the check's other sources)."""
    gamut_limit: bool = True
    """``luma``: limit the residual so that no channel leaves [0, 1] (saturated colours keep their hue)."""
    colour: str = "luma"
    """``luma``: correct luminance only, chroma stays bicubic; ``rgb``: correct all three channels."""
    scale: int = 2
    hr_size: tuple[int, int] = (96, 128)
    """(height, width) of the high-resolution targets (photos are resized and centre-cropped to it)."""
    quality: tuple[int, int] = (10, 70)
    """JPEG quality range of the crappifier (the course's)."""
    variants: int = 2
    """Crappified copies of each training photo (odd ones mirrored), each with its own seed."""
    number_share: float = 0.5
    """Share of training inputs with the number drawn on them."""
    ssim_weight: float = 0.2
    feature_weights: str | None = None
    """VGG16 weights for the feature loss; without them, L1 + SSIM."""
    tile: int = 64
    margin: int = 8
    """Serving tiles: input tile size and the overlap discarded on each side. With a margin at least
    the network's receptive field (``resps``: 2 x blocks + 3 pixels) tiles give exactly the whole-image result."""
    valid_pct: float = 0.2


# ---------------------------------------------------------------- data


def photo_items(root: Path, valid_pct: float, seed: int) -> tuple[list[Path], list[Path]]:
    """Photos in ``root``: ``valid.txt`` beside the folder names validation files, else a seeded random split."""
    return split_images(root, root.parent / "valid.txt", valid_pct, seed)


def fit_size(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Resize to cover ``size`` = (height, width) and centre-crop to it (no change when it already fits)."""
    h, w = size
    img = img.convert("RGB")
    if img.size == (w, h):
        return img
    ratio = max(w / img.width, h / img.height)
    rw, rh = max(w, round(img.width * ratio)), max(h, round(img.height * ratio))
    img = img.resize((rw, rh), Image.Resampling.BICUBIC)
    left, top = (rw - w) // 2, (rh - h) // 2
    return img.crop((left, top, left + w, top + h))


class Superres(Task):
    name = "superres"
    datasets = ("camvid_tiny",)
    metric_name = "psnr"
    higher_is_better = True
    config_class = SuperresConfig
    promotion = PromotionPolicy(tolerance=0.05, latency_budget_ms=250.0)
    configs = {
        # served: the residual pixel-shuffle network measured better than the U-Net (README)
        "demo": {
            "epochs": 18,
            "batch_size": 8,
            "lr": 2e-3,
            "weight_decay": 0.0,
            "arch": "resps",
            "width": 0.5,
            "blocks": 6,
            "res_scale": 1.0,
            "residual_init": 0.1,
            "variants": 4,
            "number_share": 0.25,
            "synthetic": 20,
            "ssim_weight": 0.1,
            "tile": 96,
            "margin": 16,
        },
        # the course's U-Net (ResNet encoder, pixel-shuffle decoder, ICNR)
        "unet": {
            "epochs": 12,
            "batch_size": 8,
            "lr": 1e-3,
            "weight_decay": 0.01,
            "arch": "unet",
            "encoder": "resnet10",
            "width": 0.25,
            "residual_init": 0.1,
            "ssim_weight": 0.1,
            "tile": 96,
            "margin": 16,
        },
        "tiny": {
            "epochs": 1,
            "batch_size": 8,
            "lr": 2e-3,
            "limit": 24,
            "arch": "unet",
            "encoder": "resnet10",
            "width": 0.125,
            "hr_size": (32, 48),
            "variants": 1,
            "max_harm_db": None,
            "tile": 32,
            "margin": 4,
        },
    }

    # ------------------------------------------------------------------ data

    def validate(self, data_dir: Path, config: TrainConfig) -> list[str]:
        assert isinstance(config, SuperresConfig)
        root = data_dir / config.dataset / config.folder
        if not root.is_dir():
            return [f"{root} does not exist"]
        problems = []
        h, w = config.hr_size
        if h % config.scale or w % config.scale:
            problems.append(f"hr_size {config.hr_size} is not a multiple of the scale {config.scale}")
        if config.arch == "resps" and config.margin < 2 * config.blocks + 3:
            problems.append(f"tile margin {config.margin} is under the network's receptive field ({2 * config.blocks + 3}): tiles would show seams")
        try:
            train, valid = photo_items(root, config.valid_pct, config.seed)
        except (FileNotFoundError, OSError) as exc:
            return [*problems, str(exc)]
        problems += split_report(train, valid, "photo(s)")
        sizes, broken = image_sizes(train + valid)
        small = [f"{p.name} {s}" for p, s in sizes.items() if s[0] < w // 2 or s[1] < h // 2]
        problems += broken_report(broken)
        if small:
            problems.append(f"{len(small)} photo(s) are under half of hr_size {config.hr_size}, e.g. {small[:3]}")
        return problems

    def load(self, data_dir: Path, config: TrainConfig) -> Dataset:
        assert isinstance(config, SuperresConfig)
        root = data_dir / config.dataset / config.folder
        train, valid = photo_items(root, config.valid_pct, config.seed)
        if config.limit:
            train, valid = train[: config.limit], valid[: config.limit]
        size = tuple(int(s) for s in config.hr_size)
        loss = "feature" if config.feature_weights else ("l1_ssim" if config.ssim_weight else "l1")
        spec: Spec = {
            "scale": config.scale,
            "tile": config.tile,
            "margin": config.margin,
            "arch": config.arch,
            "loss": loss,
            "colour": config.colour,
            "luma": list(LUMA),
        }
        hr = {p: fit_size(Image.open(p), size) for p in train + valid}
        tx, ty = [], []
        n_numbered = int(round(config.number_share * config.variants))
        sources = [(hr[p], p.name) for p in train]
        sources += [(img, f"synthetic-{j}") for j, img in enumerate(varied_images(config.synthetic, size, seed=config.synthetic_seed))]
        for img, name in sources:
            for v in range(config.variants):
                target = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if v % 2 else img
                bad = crappify(target, item_seed(config.seed, name, v), config.scale, config.quality, number=v < n_numbered)
                tx.append(to_array(bad.image))
                ty.append(to_array(target))
        vx, vy, vnum = [], [], []
        for p in valid:
            seed = item_seed(config.seed, p.name, "valid")
            vx.append(to_array(crappify(hr[p], seed, config.scale, config.quality, number=False).image))
            vnum.append(to_array(crappify(hr[p], seed, config.scale, config.quality, number=True).image))
            vy.append(to_array(hr[p]))
        extras = {"valid_numbered_x": np.stack(vnum), "valid_names": [p.name for p in valid], "quality": config.quality}
        return Dataset((np.stack(tx),), np.stack(ty), (np.stack(vx),), np.stack(vy), spec, extras)

    # -------------------------------------------------------------- training

    def recipe(self, config: TrainConfig) -> "Recipe":
        from models.tasks.superres.recipe import SuperresRecipe

        return SuperresRecipe(self, config)

    # ------------------------------------------------------------ evaluation

    def metric(self, output: np.ndarray, target: np.ndarray) -> float:
        return float(psnr(output, target).mean())

    def extra_metrics(self, output: np.ndarray, target: np.ndarray) -> dict[str, float]:
        return {"ssim": float(ssim(output, target).mean())}

    def baseline(self, data: Dataset) -> float:
        """PIL bicubic upscaling of the same inputs."""
        return float(psnr(self._bicubic(data), data.valid_y).mean())

    def extra_baselines(self, data: Dataset, config: TrainConfig) -> dict[str, float]:
        return {"ssim": float(ssim(self._bicubic(data), data.valid_y).mean())}

    @staticmethod
    def _bicubic(data: Dataset) -> np.ndarray:
        return np.stack([bicubic(x, data.spec["scale"]) for x in data.valid_x[0]])

    # ------------------------------------------------------------------ ONNX

    def inputs(self, spec: Spec) -> list[TensorSpec]:
        return [TensorSpec("image", "float32", ("batch", 3, "height", "width"))]

    def outputs(self, spec: Spec) -> list[TensorSpec]:
        return [TensorSpec("upscaled", "float32", ("batch", 3, "out_height", "out_width"))]

    def reference_sizes(self, spec: Spec) -> dict[str, int]:
        t, s = int(spec["tile"]), int(spec["scale"])
        return {"height": t, "width": t, "out_height": t * s, "out_width": t * s}

    def parity_inputs(self, data: Dataset) -> list[tuple[np.ndarray, ...]]:
        """Batch 1 and 4 at the validation size, a batch of serving tiles, and an odd-sized crop."""
        (x,) = data.valid_x
        t = int(data.spec["tile"])
        h, w = x.shape[-2:]
        tiles = np.pad(x[:3], ((0, 0), (0, 0), (0, max(0, t - h)), (0, max(0, t - w))), mode="edge")[:, :, :t, :t]
        odd = x[:2, :, : max(h - 5, 4), : max(w - 11, 4)]
        return [(x[:1],), (x[:4],), (np.ascontiguousarray(tiles),), (np.ascontiguousarray(odd[:1]),), (np.ascontiguousarray(odd),)]

    # --------------------------------------------------------------- figures

    def figures(self, data: Dataset, output: np.ndarray) -> dict[str, Any]:
        """Input, bicubic, model and original for a few validation images."""
        from matplotlib.figure import Figure

        scale = data.spec["scale"]
        rows = min(3, len(output))
        fig = Figure(figsize=(12, 2.8 * max(rows, 1)))
        axes = np.atleast_2d(fig.subplots(max(rows, 1), 4, squeeze=False))
        model_psnr = psnr(output[:rows], data.valid_y[:rows])
        for i in range(rows):
            x = data.valid_x[0][i]
            bic = bicubic(x, scale)
            bic_psnr = psnr(bic[None], data.valid_y[i : i + 1])[0]
            panels = [
                (to_uint8(x), "input"),
                (to_uint8(bic), f"bicubic {bic_psnr:.2f} dB"),
                (to_uint8(output[i]), f"model {model_psnr[i]:.2f} dB"),
                (to_uint8(data.valid_y[i]), "original"),
            ]
            for ax, (img, title) in zip(axes[i], panels):
                ax.imshow(img, interpolation="nearest")
                ax.set_title(title, fontsize=9)
                ax.axis("off")
        fig.suptitle(f"Validation ({data.spec['loss']} loss): input, bicubic, model, original")
        fig.tight_layout()
        return {"superres.png": fig}


TASK = Superres()
