"""Loaders for the sample data and the real datasets, on files the tests write."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fakes import write_mnist_like, write_ratings
from PIL import Image

from models.registry import get_task
from models.tasks.classify import ClassifyConfig, folder_items, pets_items
from models.tasks.recommend import IdMaps, RecommendConfig, read_ratings


def write_pets(root: Path) -> Path:
    images = root / "oxford-iiit-pet" / "images"
    images.mkdir(parents=True)
    for breed in ("Abyssinian", "great_pyrenees", "Bengal"):
        for i in range(1, 6):
            Image.new("RGB", (40, 30), (i * 20, 80, 120)).save(images / f"{breed}_{i}.jpg")
    (images / "README.txt").write_text("not an image")
    (images / "no_number.jpg").write_bytes(b"")
    return images


def test_pets_labels_come_from_file_names(tmp_path: Path) -> None:
    images = write_pets(tmp_path)
    train, valid = pets_items(images, valid_pct=0.2, seed=1)
    assert len(train) + len(valid) == 15 and len(valid) == 3
    assert {label for _, label in train + valid} == {"Abyssinian", "great_pyrenees", "Bengal"}
    assert all(p.name.startswith(label + "_") for p, label in train + valid)
    assert pets_items(images, 0.2, 1) == (train, valid)  # the split is seeded
    assert pets_items(images, 0.2, 2) != (train, valid)


def test_classify_loads_pets_into_normalised_arrays(tmp_path: Path) -> None:
    write_pets(tmp_path)
    task = get_task("classify")
    data = task.load(tmp_path, ClassifyConfig(dataset="oxford-iiit-pet", image_size=32))
    assert data.spec["classes"] == sorted(["Abyssinian", "great_pyrenees", "Bengal"])
    assert data.train_x[0].shape[1:] == (3, 32, 32) and data.train_x[0].dtype == np.float32
    assert abs(float(data.train_x[0].mean())) < 0.5  # normalised with the training stats


def test_folder_layout(tmp_path: Path) -> None:
    write_mnist_like(tmp_path, per_class=3)
    train, valid = folder_items(tmp_path / "mnist_tiny")
    assert len(train) == 6 and len(valid) == 6
    assert {label for _, label in train} == {"3", "7"}


def test_ratings_csv_and_u_data_read_the_same(tmp_path: Path) -> None:
    write_ratings(tmp_path)
    csv = read_ratings(tmp_path / "movie_lens_sample")
    ml100k = tmp_path / "ml-100k"
    ml100k.mkdir()
    (ml100k / "u.data").write_text(
        "".join(f"{r.user}\t{r.movie}\t{int(r.rating * 2) / 2}\t0\n" for r in csv.itertuples())
    )
    tsv = read_ratings(ml100k)
    assert list(tsv.columns) == ["user", "movie", "rating"]
    assert (tsv["user"].to_numpy() == csv["user"].to_numpy()).all()
    assert np.allclose(tsv["rating"], csv["rating"])


def test_missing_ratings_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="ratings.csv"):
        read_ratings(tmp_path)


def test_id_maps_reserve_zero_for_unknown_ids() -> None:
    maps = IdMaps({"users": [5, 9], "movies": [100]})
    users, movies = maps.encode(np.array([9, 5, 7]), np.array([100, 3, 100]))
    assert users.tolist() == [2, 1, 0] and movies.tolist() == [1, 0, 1]


def test_recommend_spec_fits_on_the_training_split_only(tmp_path: Path) -> None:
    write_ratings(tmp_path)
    data = get_task("recommend").load(tmp_path, RecommendConfig())
    train_users = set(data.extras["train"]["user"])
    assert set(data.spec["users"]) == train_users
    assert 0 < len(data.valid_y) < len(data.train_y)
    assert set(data.spec["popular"]) <= set(data.spec["movies"])
