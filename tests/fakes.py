"""Small fake datasets in the course layouts, written by the tests themselves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def write_mnist_like(root: Path, per_class: int = 24, seed: int = 0) -> Path:
    """``mnist_tiny`` layout: ``train|valid/{3,7}/*.png``; the classes differ in a learnable way."""
    rng = np.random.default_rng(seed)
    folder = root / "mnist_tiny"
    for split in ("train", "valid"):
        for label in ("3", "7"):
            d = folder / split / label
            d.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                img = rng.integers(0, 60, size=(28, 28), dtype=np.uint8)
                if label == "3":
                    img[4:24, 6:10] = 230  # a bar on the left
                else:
                    img[4:8, 4:24] = 230  # a bar on top
                Image.fromarray(img, mode="L").save(d / f"{i}.png")
    (folder / "labels.csv").write_text("name,label\n")
    return folder


def write_ratings(root: Path, users: int = 30, movies: int = 25, seed: int = 0) -> Path:
    """``movie_lens_sample`` layout: ``ratings.csv`` with userId,movieId,rating,timestamp."""
    rng = np.random.default_rng(seed)
    folder = root / "movie_lens_sample"
    folder.mkdir(parents=True, exist_ok=True)
    taste = rng.normal(size=(users, 3))
    kind = rng.normal(size=(movies, 3))
    rows = ["userId,movieId,rating,timestamp"]
    for u in range(users):
        for m in rng.choice(movies, size=movies * 2 // 3, replace=False):
            score = np.clip(np.round((3 + taste[u] @ kind[m]) * 2) / 2, 0.5, 5.0)
            rows.append(f"{u + 100},{m + 1000},{score},{1000000 + u * 100 + m}")
    (folder / "ratings.csv").write_text("\n".join(rows) + "\n")
    return folder


POSITIVE_WORDS = ("great", "wonderful", "loved", "brilliant", "superb", "moving", "best", "enjoyed")
NEGATIVE_WORDS = ("awful", "boring", "hated", "terrible", "worst", "dull", "waste", "poor")
NEUTRAL_WORDS = ("the", "movie", "film", "plot", "actor", "scene", "story", "and", "was", "it", "a", "of", "this", "director")


def write_imdb_like(root: Path, n_train: int = 96, n_valid: int = 32, seed: int = 0) -> Path:
    """``imdb_sample`` layout: ``texts.csv`` with label,text,is_valid; positive and negative words tell the labels apart."""
    import csv

    rng = np.random.default_rng(seed)
    folder = root / "imdb_sample"
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "texts.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["label", "text", "is_valid"])
        for i in range(n_train + n_valid):
            label = "positive" if i % 2 == 0 else "negative"
            cue = POSITIVE_WORDS if label == "positive" else NEGATIVE_WORDS
            words = [str(w) for w in rng.choice(NEUTRAL_WORDS, size=int(rng.integers(8, 40)))]
            for _ in range(int(rng.integers(2, 5))):
                words.insert(int(rng.integers(0, len(words) + 1)), str(rng.choice(cue)))
            text = " ".join(words).capitalize() + ("!" if i % 3 == 0 else ".")
            writer.writerow([label, text, "True" if i >= n_train else "False"])
    return folder


CAMVID_CODES = ("Building", "Car", "Road", "Sky", "Tree", "Void")
CAMVID_COLOURS = {"Building": (150, 90, 40), "Car": (220, 30, 30), "Road": (110, 110, 110), "Sky": (90, 150, 230), "Tree": (30, 150, 40)}


def write_camvid_like(root: Path, n: int = 80, size: tuple[int, int] = (48, 64), seed: int = 0) -> Path:
    """``camvid_tiny`` layout: ``images/<stem>.png``, ``labels/<stem>_P.png``, ``codes.txt`` (no ``valid.txt``).

    Learnable: sky above road, plus rectangles of buildings, cars and trees; a pixel's
    class is its colour (with noise). A black strip at the bottom is ``Void``.
    """
    rng = np.random.default_rng(seed)
    folder = root / "camvid_tiny"
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "labels").mkdir(parents=True, exist_ok=True)
    (folder / "codes.txt").write_text("\n".join(CAMVID_CODES) + "\n")
    index = {c: i for i, c in enumerate(CAMVID_CODES)}
    colours = np.zeros((len(CAMVID_CODES), 3), dtype=np.int16)
    for cls, rgb in CAMVID_COLOURS.items():
        colours[index[cls]] = rgb
    h, w = size
    for i in range(n):
        label = np.full((h, w), index["Road"], dtype=np.uint8)
        horizon = int(rng.integers(h // 3, h // 2 + 1))
        label[:horizon] = index["Sky"]
        for cls in ("Building", "Tree", "Car"):
            for _ in range(int(rng.integers(1, 3))):
                bh, bw = int(rng.integers(h // 6, h // 2)), int(rng.integers(w // 8, w // 3))
                top, left = int(rng.integers(0, h - bh)), int(rng.integers(0, w - bw))
                label[top : top + bh, left : left + bw] = index[cls]
        label[h - 3 :] = index["Void"]
        img = colours[label] + rng.integers(-20, 21, size=(h, w, 3))
        stem = f"0001TP_{i:06d}"
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(folder / "images" / f"{stem}.png")
        Image.fromarray(label, mode="L").save(folder / "labels" / f"{stem}_P.png")
    return folder


def write_rossmann_like(root: Path, stores: int = 6, seed: int = 0) -> Path:
    """``rossmann_sample`` layout (Kaggle's train.csv, store.csv): the task's own generator, small."""
    from models.tasks.sales.synthetic import write_rossmann

    return write_rossmann(root / "rossmann_sample", n_stores=stores, start="2014-10-01", end="2015-07-31", seed=seed)


def write_mirror(root: Path) -> Path:
    """A ``ZOO_DATA_MIRROR`` holding every dataset the registered tasks need."""
    write_mnist_like(root)
    write_ratings(root)
    write_rossmann_like(root)
    write_camvid_like(root)
    write_imdb_like(root)
    return root
