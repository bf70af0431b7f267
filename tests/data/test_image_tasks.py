"""``segment`` and ``superres`` loaders and the crappifier, on files the tests write."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from fakes import CAMVID_CODES, write_camvid_like
from PIL import Image

from models.crappify import crappify, item_seed
from models.registry import get_task
from models.tasks.segment import IGNORE, split_items
from models.tasks.superres import bicubic, fit_size, psnr


@pytest.fixture(scope="module")
def camvid(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("camvid")
    write_camvid_like(root, n=30)
    return root


def test_segment_split_is_seeded_and_a_fifth(camvid: Path) -> None:
    train, valid = split_items(camvid / "camvid_tiny", 0.2, seed=1)
    assert len(valid) == 6 and len(train) == 24 and not set(train) & set(valid)
    assert split_items(camvid / "camvid_tiny", 0.2, seed=1) == (train, valid)
    assert split_items(camvid / "camvid_tiny", 0.2, seed=2) != (train, valid)


def test_segment_respects_valid_txt(tmp_path: Path) -> None:
    root = write_camvid_like(tmp_path, n=10)
    names = sorted(p.name for p in (root / "images").iterdir())[:3]
    (root / "valid.txt").write_text("\n".join(names) + "\n")
    train, valid = split_items(root, 0.2, seed=0)
    assert [p.name for p in valid] == names and len(train) == 7


def test_segment_loads_masks_with_void_ignored(camvid: Path) -> None:
    task = get_task("segment")
    cfg = task.config("tiny", limit=None, flip=True)
    data = task.load(camvid, cfg)
    (tx,), (vx,) = data.train_x, data.valid_x
    h, w = cfg.image_size
    assert tx.shape == (48, 3, h, w) and vx.shape == (6, 3, h, w) and tx.dtype == np.float32
    assert data.train_y.shape == (48, h, w) and data.train_y.dtype == np.uint8
    assert np.array_equal(data.train_y[24:], data.train_y[:24, :, ::-1])  # mirrored copies
    assert data.spec["classes"] == list(CAMVID_CODES) and data.spec["void"] == CAMVID_CODES.index("Void")
    assert set(np.unique(data.valid_y)) <= set(range(len(CAMVID_CODES) - 1)) | {IGNORE}
    assert (data.valid_y[:, -1] == IGNORE).all()  # the fake Void strip
    assert abs(float(tx.mean())) < 0.2  # normalised with the training stats


def test_segment_validation_reports_missing_and_mismatched_masks(tmp_path: Path) -> None:
    root = write_camvid_like(tmp_path, n=10)
    task = get_task("segment")
    masks = sorted((root / "labels").iterdir())
    masks[0].unlink()
    Image.new("L", (10, 10)).save(masks[1])
    problems = task.validate(tmp_path, task.config("tiny"))
    assert any("no mask" in p for p in problems) and any("differ in size" in p for p in problems)


def test_crappify_is_seeded_smaller_jpeg_with_a_number() -> None:
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 120, size=(96, 128, 3), dtype=np.uint8))
    a = crappify(photo, seed=7)
    assert crappify(photo, seed=7).jpeg == a.jpeg  # seeded: the same bytes
    assert crappify(photo, seed=8).jpeg != a.jpeg
    assert a.image.size == (64, 48) and a.image.mode == "RGB"
    assert a.jpeg[:2] == b"\xff\xd8" and 10 <= a.quality <= 70
    with Image.open(io.BytesIO(a.jpeg)) as decoded:
        assert decoded.format == "JPEG"
    clean = crappify(photo, seed=7, number=False)
    assert clean.quality == a.quality and clean.number_at is None and a.number_at is not None
    x0, y0 = a.number_at
    assert x0 <= 32 and y0 <= 24  # the top-left quarter, as the course draws it
    diff = np.abs(np.asarray(a.image, dtype=np.int16) - np.asarray(clean.image, dtype=np.int16)).max(axis=2)
    ys, xs = np.nonzero(diff > 60)
    assert len(ys) > 5  # the white number is there
    assert ys.min() >= y0 - 8 and xs.min() >= x0 - 8  # ... and only around where it was drawn
    assert crappify(photo, seed=7, scale=4).image.size == (32, 24)


def test_item_seed_is_stable() -> None:
    assert item_seed(42, "a.png", 0) == item_seed(42, "a.png", 0) != item_seed(42, "a.png", 1)
    assert item_seed(42, "a.png", 0) == 3013157272  # not Python's per-process salted hash


def test_superres_loads_pairs_at_two_sizes(camvid: Path) -> None:
    task = get_task("superres")
    cfg = task.config("tiny", limit=None, variants=2)
    data = task.load(camvid, cfg)
    (tx,), (vx,) = data.train_x, data.valid_x
    h, w = cfg.hr_size
    assert tx.shape == (48, 3, h // 2, w // 2) and data.train_y.shape == (48, 3, h, w)
    assert vx.shape == (6, 3, h // 2, w // 2) and data.extras["valid_numbered_x"].shape == vx.shape
    assert 0 <= tx.min() and tx.max() <= 1 and tx.dtype == np.float32
    assert np.array_equal(data.train_y[1], data.train_y[0][:, :, ::-1])  # the second variant is mirrored
    assert not np.array_equal(data.extras["valid_numbered_x"], vx)  # numbers drawn on the scored-separately copy
    assert data.spec["loss"] == "l1_ssim" and data.spec["scale"] == 2
    again = task.load(camvid, cfg)
    assert np.array_equal(again.train_x[0], tx)  # seeded crappification


def test_bicubic_baseline_and_psnr() -> None:
    x = np.random.default_rng(0).integers(0, 256, size=(3, 8, 10)).astype(np.float32) / 255
    up = bicubic(x, 2)
    assert up.shape == (3, 16, 20)
    assert psnr(up[None], up[None])[0] > 100
    assert abs(psnr(np.zeros((1, 3, 4, 4)), np.full((1, 3, 4, 4), 0.1))[0] - 20.0) < 0.01


def test_fit_size_covers_and_crops() -> None:
    img = fit_size(Image.new("RGB", (300, 100)), (96, 128))
    assert img.size == (128, 96)


@pytest.mark.parametrize("suffix", [".gif", ".tif", ".webp", ".JPG"])
def test_every_image_task_reads_the_same_image_files(tmp_path: Path, suffix: str) -> None:
    """One set of suffixes: a folder of GIFs (or TIFFs) trains in classify as in segment and superres."""
    from models.images import split_images
    from models.tasks.classify import folder_items

    fmt = {".gif": "GIF", ".tif": "TIFF", ".webp": "WEBP", ".JPG": "JPEG"}[suffix]
    for split in ("train", "valid"):
        for label in ("a", "b"):
            folder = tmp_path / "cls" / split / label
            folder.mkdir(parents=True)
            Image.new("RGB", (8, 8), (10, 200, 30)).save(folder / f"x{suffix}", format=fmt)
    train, valid = folder_items(tmp_path / "cls")
    assert len(train) == 2 and len(valid) == 2
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(5):
        Image.new("RGB", (8, 8), (i, 0, 0)).save(photos / f"{i}{suffix}", format=fmt)
    train, valid = split_images(photos, photos / "valid.txt", 0.2, seed=0)
    assert len(train) + len(valid) == 5
