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
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import nn
from torch.nn import functional as F

from models.crappify import crappify, item_seed
from models.images import split_images
from models.task import Dataset, PromotionPolicy, Spec, Task, TensorSpec, TrainConfig
from models.unet import ARCHS, DynamicUnet, icnr_
from models.weights import load_weights

LUMA = (0.299, 0.587, 0.114)
"""ITU-R BT.601 luminance weights (JPEG's Y)."""


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
    max_harm_db: float | None = 0.15
    """Fail the run when the model is this much worse than bicubic on any image from another source (None: no check).

    Not zero: a deterministic model sharpening JPEG blocks on a smooth synthetic
    gradient lands a tenth of a dB either side of bicubic; a colour cast costs 1-3 dB.
    """
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


def to_array(img: Image.Image) -> np.ndarray:
    """PIL image -> float32 CHW RGB in [0, 1]. Training and serving both call this."""
    return (np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0).transpose(2, 0, 1).copy()


def to_uint8(x: np.ndarray) -> np.ndarray:
    """Model output CHW (any range) -> uint8 HWC: clipped to [0, 1] and rounded."""
    return (np.clip(x, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8).transpose(1, 2, 0)


def bicubic(x: np.ndarray, scale: int) -> np.ndarray:
    """PIL bicubic upscaling of a float CHW image in [0, 1] (exactly uint8/255) -> float CHW: the baseline."""
    img = Image.fromarray(to_uint8(x))
    return to_array(img.resize((img.width * scale, img.height * scale), Image.Resampling.BICUBIC))


# ------------------------------------------------------------- metrics


def quantise(x: np.ndarray) -> np.ndarray:
    """What a served PNG holds: clipped to [0, 1] and rounded to 8 bits."""
    return np.round(np.clip(x, 0.0, 1.0) * 255.0) / 255.0


def psnr(output: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per-image PSNR (dB) of ``(N, C, H, W)`` outputs in [0, 1] (quantised first) against the targets."""
    mse = ((quantise(output).astype(np.float64) - target) ** 2).reshape(len(output), -1).mean(axis=1)
    return 10.0 * np.log10(1.0 / np.maximum(mse, 1e-12))


def _gauss_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    g = torch.exp(-((torch.arange(size, dtype=torch.float32) - size // 2) ** 2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


def ssim_torch(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Per-image mean SSIM of ``(N, C, H, W)`` tensors (Gaussian window 11, sigma 1.5, per channel)."""
    c = a.shape[1]
    win = _gauss_window().to(a).repeat(c, 1, 1, 1)
    pad = win.shape[-1] // 2
    a_, b_ = F.pad(a, [pad] * 4, mode="replicate"), F.pad(b, [pad] * 4, mode="replicate")

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, win, groups=c)

    mu_a, mu_b = blur(a_), blur(b_)
    var_a = blur(a_ * a_) - mu_a**2
    var_b = blur(b_ * b_) - mu_b**2
    cov = blur(a_ * b_) - mu_a * mu_b
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return s.flatten(1).mean(dim=1)


def ssim(output: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per-image SSIM of quantised outputs against the targets (numpy in, numpy out)."""
    with torch.no_grad():
        return ssim_torch(torch.from_numpy(quantise(output).astype(np.float32)), torch.from_numpy(target.astype(np.float32))).numpy()


# ------------------------------------------------------------- networks


class ResidualPS(nn.Module):
    """A light residual network on one channel with a pixel-shuffle upscale (ESPCN/EDSR-like)."""

    def __init__(self, scale: int = 2, features: int = 64, blocks: int = 6, channels: int = 1, res_scale: float = 0.2) -> None:
        super().__init__()
        self.res_scale = res_scale
        self.head = nn.Conv2d(channels, features, 3, padding=1)
        self.body = nn.ModuleList(
            nn.Sequential(nn.Conv2d(features, features, 3, padding=1), nn.ReLU(), nn.Conv2d(features, features, 3, padding=1))
            for _ in range(blocks)
        )
        self.tail = nn.Conv2d(features, features, 3, padding=1)
        self.up = nn.Conv2d(features, channels * scale**2, 3, padding=1)
        icnr_(self.up.weight, scale)
        nn.init.zeros_(self.up.bias)
        self.shuffle = nn.PixelShuffle(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.head(x)
        y = h
        for block in self.body:
            y = y + self.res_scale * block(y)
        return self.shuffle(self.up(F.relu(self.tail(y) + h)))


def _cubic(t: np.ndarray, a: float) -> np.ndarray:
    t = np.abs(t)
    near = ((a + 2) * t - (a + 3)) * t * t + 1
    far = ((t - 5) * t + 8) * t * a - 4 * a
    return np.where(t <= 1, near, np.where(t < 2, far, 0.0))


class Bicubic(nn.Module):
    """Bicubic upscaling by an integer ``scale`` with PIL's kernel (a = -0.5), edges repeated.

    PyTorch's own bicubic uses a = -0.75, a sharper kernel that rings more on
    saturated edges; this one reproduces PIL's ``Image.resize(BICUBIC)`` (the
    baseline) up to rounding, as one grouped 5x5 convolution and a pixel shuffle.
    """

    def __init__(self, scale: int, channels: int = 3, a: float = -0.5) -> None:
        super().__init__()
        taps = np.arange(-2, 3, dtype=np.float64)
        rows = []
        for phase in range(scale):
            w = _cubic(taps - ((phase + 0.5) / scale - 0.5), a)
            rows.append(w / w.sum())
        k = np.asarray(rows)  # (scale, 5)
        kernel = np.einsum("pi,qj->pqij", k, k).reshape(scale * scale, 1, 5, 5)
        self.scale, self.channels = scale, channels
        self.register_buffer("kernel", torch.from_numpy(np.tile(kernel, (channels, 1, 1, 1))).float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.conv2d(F.pad(x, (2, 2, 2, 2), mode="replicate"), self.kernel, groups=self.channels)
        return F.pixel_shuffle(out, self.scale)


class LumaResidual(nn.Module):
    """``bicubic(x) + body(Y(x))``: an RGB image in [0, 1] in, its ``scale``x upscaling out.

    With ``luma=False`` the body sees and corrects all three channels instead
    (``bicubic(x) + body(x)``): more to gain on JPEG-damaged colour, but colour can drift.
    """

    def __init__(self, body: nn.Module, scale: int, luma: bool = True, gamut_limit: bool = False) -> None:
        super().__init__()
        self.body, self.scale, self.luma_only, self.gamut_limit = body, scale, luma, gamut_limit
        self.upsample = Bicubic(scale)
        self.register_buffer("luma", torch.tensor(LUMA, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        base = self.upsample(x)
        if not self.luma_only:
            return base + self.body((x - 0.45) / 0.25)
        delta = self.body(((x * self.luma).sum(dim=1, keepdim=True) - 0.45) / 0.25)
        if self.gamut_limit:  # no channel is pushed out of [0, 1]: saturated colours keep their hue
            inside = base.clamp(0.0, 1.0)
            low, high = -inside.amin(dim=1, keepdim=True), 1.0 - inside.amax(dim=1, keepdim=True)
            delta = torch.minimum(torch.maximum(delta, low), high)
        return base + delta


# ------------------------------------------------------------------ loss


class FeatureLoss(nn.Module):
    """The course's feature loss: pixel L1 + L1 of VGG16 features and (x 5e3) of their Gram matrices."""

    def __init__(self, weights: Path, layer_weights: tuple[float, ...] = (20.0, 70.0, 10.0)) -> None:
        super().__init__()
        import torchvision

        vgg = torchvision.models.vgg16(weights=None).features
        state = load_weights(weights)
        state = {k.removeprefix("features."): v for k, v in state.items() if not k.startswith("classifier.")}
        vgg.load_state_dict(state)
        vgg.eval().requires_grad_(False)
        pools = [i for i, m in enumerate(vgg) if isinstance(m, nn.MaxPool2d)]
        self.layer_ids = [i - 1 for i in pools[1:4]]  # the ReLU before the 2nd, 3rd and 4th pooling
        self.vgg = vgg[: self.layer_ids[-1] + 1]
        self.layer_weights = layer_weights
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        out, h = [], (x - self.mean) / self.std
        for i, layer in enumerate(self.vgg):
            h = layer(h)
            if i in self.layer_ids:
                out.append(h)
        return out

    @staticmethod
    def gram(x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        f = x.reshape(n, c, h * w)
        return f @ f.transpose(1, 2) / (c * h * w)

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = F.l1_loss(output, target)
        for fo, ft, w in zip(self.features(output), self.features(target), self.layer_weights):
            loss = loss + w * F.l1_loss(fo, ft) + w**2 * 5e3 * F.l1_loss(self.gram(fo), self.gram(ft))
        return loss


def l1_ssim(output: torch.Tensor, target: torch.Tensor, ssim_weight: float) -> torch.Tensor:
    loss = F.l1_loss(output, target)
    if ssim_weight:
        loss = loss + ssim_weight * (1.0 - ssim_torch(output, target).mean())
    return loss


# ------------------------------------------------------ generalisation


def other_sources(size: tuple[int, int] = (96, 128), seed: int = 0) -> dict[str, Image.Image]:
    """High-resolution images unlike the training photos, for the does-no-harm check."""
    h, w = size
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    # a saturated "flower": magenta petals on green with a yellow centre
    r = np.hypot(yy - h / 2, xx - w / 2)
    angle = np.arctan2(yy - h / 2, xx - w / 2)
    petals = r < (0.3 + 0.12 * np.cos(6 * angle)) * min(h, w)
    flower = np.zeros((h, w, 3), dtype=np.float32)
    flower[:] = (20, 150, 30)
    flower[petals] = (230, 20, 160)
    flower[r < 0.08 * min(h, w)] = (250, 220, 0)
    flower += rng.normal(0, 4, size=flower.shape)
    # a digit, MNIST-like: white on black, upscaled and blurred strokes
    digit = Image.new("L", (28, 28), 0)
    ImageDraw.Draw(digit).line([(7, 6), (21, 6), (12, 23)], fill=255, width=3)
    digit = digit.resize((w, h), Image.Resampling.BICUBIC).convert("RGB")
    # saturated colour bars and a smooth hue gradient
    bars = np.zeros((h, w, 3), dtype=np.float32)
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255), (255, 0, 255), (255, 255, 255), (0, 0, 0)]
    for i, c in enumerate(colours):
        bars[:, i * w // len(colours) : (i + 1) * w // len(colours)] = c
    hue = np.stack([np.sin(xx / w * np.pi) * 255, np.sin(yy / h * np.pi) * 255, (1 - xx / w) * 255], axis=-1)
    return {
        "flower": Image.fromarray(np.clip(flower, 0, 255).astype(np.uint8)),
        "digit": digit,
        "colour_bars": Image.fromarray(bars.astype(np.uint8)),
        "gradient": Image.fromarray(np.clip(hue, 0, 255).astype(np.uint8)),
    }


class DoesHarm(ValueError):
    """The model came out worse than bicubic on an image unlike its training photos."""


def check_no_harm(report: dict[str, float], max_harm_db: float | None) -> None:
    """Raise :class:`DoesHarm` when a ``gain_db_other_*`` of ``report`` is below ``-max_harm_db``."""
    if max_harm_db is None:
        return
    worse = {k.removeprefix("gain_db_other_"): v for k, v in report.items() if k.startswith("gain_db_other_") and not k.endswith("_min")}
    worse = {k: v for k, v in worse.items() if v < -max_harm_db}
    if worse:
        detail = ", ".join(f"{k} {v:+.2f} dB" for k, v in sorted(worse.items()))
        raise DoesHarm(f"the model is worse than bicubic on images from other sources ({detail}; allowed -{max_harm_db} dB)")


# ------------------------------------------------------------------ task


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
            "epochs": 15,
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

    def __init__(self) -> None:
        self._loss_fn: Any = None

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
        if len(train) < 2:
            problems.append(f"{len(train)} training photo(s); at least 2 are needed")
        if not valid:
            problems.append("the validation split is empty")
        broken, small = [], []
        for path in train + valid:
            try:
                with Image.open(path) as img:
                    if img.width < w // 2 or img.height < h // 2:
                        small.append(f"{path.name} {img.size}")
                    img.verify()
            except Exception:  # any decoder error means the file is unusable
                broken.append(path.name)
        if broken:
            problems.append(f"{len(broken)} image(s) do not decode, e.g. {broken[:5]}")
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
        for p in train:
            for v in range(config.variants):
                target = hr[p].transpose(Image.Transpose.FLIP_LEFT_RIGHT) if v % 2 else hr[p]
                bad = crappify(target, item_seed(config.seed, p.name, v), config.scale, config.quality, number=v < n_numbered)
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

    # --------------------------------------------------------------- network

    def build(self, spec: Spec, config: TrainConfig) -> nn.Module:
        assert isinstance(config, SuperresConfig)
        if config.colour not in ("luma", "rgb"):
            raise ValueError(f"unknown colour {config.colour!r}; known: luma, rgb")
        ch = 1 if config.colour == "luma" else 3
        if config.arch == "unet":
            if config.encoder not in ARCHS:
                raise ValueError(f"unknown encoder {config.encoder!r}; known: {ARCHS}")
            body: nn.Module = DynamicUnet(ch, config.encoder, in_channels=ch, upscale=config.scale, width=config.width)
        elif config.arch == "resps":
            body = ResidualPS(config.scale, features=max(8, int(64 * config.width)), blocks=config.blocks, channels=ch, res_scale=config.res_scale)
        else:
            raise ValueError(f"unknown arch {config.arch!r}; known: unet, resps")
        last = [m for m in body.modules() if isinstance(m, nn.Conv2d)][-1]
        with torch.no_grad():
            last.weight.mul_(config.residual_init)
        return LumaResidual(body, config.scale, luma=config.colour == "luma", gamut_limit=config.gamut_limit)

    def train(self, data, config, *, checkpoint_dir=None, listeners=(), progress=True):  # type: ignore[override]
        """One Lightning fit with the config's loss; then the numbered inputs and other sources are scored."""
        from models.training import fit, predict

        assert isinstance(config, SuperresConfig)
        self._loss_fn = FeatureLoss(Path(config.feature_weights)) if config.feature_weights else None
        self._ssim_weight = config.ssim_weight
        try:
            result = fit(self, data, config, checkpoint_dir=checkpoint_dir, listeners=listeners, progress=progress)
        finally:
            self._loss_fn = None
        report = self.held_out_report(lambda x: predict(result.net, (x,)), data, config)
        for listener in listeners:
            listener({"epoch": float(config.epochs), **report})
        check_no_harm(report, config.max_harm_db)
        return result

    def held_out_report(self, run, data: Dataset, config: SuperresConfig) -> dict[str, float]:
        """Gain over bicubic on the validation inputs with the number drawn, and on images from other sources."""
        report: dict[str, float] = {}
        numbered = data.extras.get("valid_numbered_x")
        if numbered is not None and len(numbered):
            model = float(psnr(run(numbered), data.valid_y).mean())
            base = float(np.mean(psnr(np.stack([bicubic(x, config.scale) for x in numbered]), data.valid_y)))
            report.update({"psnr_numbered": model, "baseline_psnr_numbered": base, "gain_db_numbered": model - base})
        gains = []
        for name, img in other_sources(tuple(config.hr_size)).items():
            target = to_array(img)[None]
            small = crappify(img, item_seed(config.seed, name), config.scale, config.quality, number=False).image
            x = to_array(small)[None]
            gain = float(psnr(run(x), target)[0] - psnr(bicubic(x[0], config.scale)[None], target)[0])
            report[f"gain_db_other_{name}"] = gain
            gains.append(gain)
        report["gain_db_other_min"] = min(gains)
        return report

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self._loss_fn is not None:
            self._loss_fn = self._loss_fn.to(output.device)
            return self._loss_fn(output, target)
        return l1_ssim(output, target, getattr(self, "_ssim_weight", self.config_class.ssim_weight))

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
