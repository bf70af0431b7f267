"""What super-resolution is scored on: images as arrays, the bicubic baseline, PSNR and SSIM (numpy in and out)."""

from __future__ import annotations

import numpy as np
from PIL import Image

LUMA = (0.299, 0.587, 0.114)
"""ITU-R BT.601 luminance weights (JPEG's Y)."""


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


def quantise(x: np.ndarray) -> np.ndarray:
    """What a served PNG holds: clipped to [0, 1] and rounded to 8 bits."""
    return np.round(np.clip(x, 0.0, 1.0) * 255.0) / 255.0


def psnr(output: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per-image PSNR (dB) of ``(N, C, H, W)`` outputs in [0, 1] (quantised first) against the targets."""
    mse = ((quantise(output).astype(np.float64) - target) ** 2).reshape(len(output), -1).mean(axis=1)
    return 10.0 * np.log10(1.0 / np.maximum(mse, 1e-12))


def ssim(output: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per-image SSIM of quantised outputs against the targets (numpy in, numpy out)."""
    import torch

    from models.tasks.superres.networks import ssim_torch

    with torch.no_grad():
        return ssim_torch(torch.from_numpy(quantise(output).astype(np.float32)), torch.from_numpy(target.astype(np.float32))).numpy()
