"""Each task's declared data schema catches what would spoil a training run."""

from __future__ import annotations

from pathlib import Path

import pytest
from fakes import write_mnist_like, write_ratings

from models.registry import get_task, task_names


@pytest.mark.parametrize("name", task_names())
def test_good_sample_data_passes(mirror: Path, name: str) -> None:
    task = get_task(name)
    assert task.validate(mirror, task.config("tiny")) == []


@pytest.mark.parametrize(
    "rows, expected",
    [
        ("1,2,9.0,1\n", "in_range(0.5, 5.0)"),
        ("1,2,,1\n", "not_nullable"),
        ("-1,2,3.0,1\n", "greater_than_or_equal_to(0)"),
        ("x,2,3.0,1\n", "coerce_dtype('int64')"),
    ],
)
def test_ratings_violations_are_reported(tmp_path: Path, rows: str, expected: str) -> None:
    folder = write_ratings(tmp_path)
    with (folder / "ratings.csv").open("a") as f:
        f.write(rows)
    task = get_task("recommend")
    problems = task.validate(tmp_path, task.config("tiny"))
    assert any(expected in p for p in problems), problems


def test_too_few_ratings_are_reported(tmp_path: Path) -> None:
    folder = tmp_path / "movie_lens_sample"
    folder.mkdir()
    (folder / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,2,3.0,1\n2,3,4.0,1\n")
    task = get_task("recommend")
    assert any("row count" in p for p in task.validate(tmp_path, task.config("tiny")))


def test_broken_and_missing_images_are_reported(tmp_path: Path) -> None:
    folder = write_mnist_like(tmp_path, per_class=6)
    (folder / "train" / "3" / "0.png").write_bytes(b"not a png")
    for p in (folder / "train" / "7").iterdir():
        if p.name != "0.png":
            p.unlink()
    task = get_task("classify")
    problems = task.validate(tmp_path, task.config("tiny"))
    assert any("do not decode" in p for p in problems)
    assert any("class '7' has 1 training images" in p for p in problems)


def test_a_single_class_is_reported(tmp_path: Path) -> None:
    import shutil

    folder = write_mnist_like(tmp_path, per_class=6)
    shutil.rmtree(folder / "train" / "7")
    task = get_task("classify")
    problems = task.validate(tmp_path, task.config("tiny"))
    assert any("1 class(es)" in p for p in problems)
    assert any("never seen in training" in p for p in problems)
