"""``superres`` must not be worse than bicubic on images unlike its training photos: the check and its report."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.registry import get_task
from models.tasks.superres.quality import bicubic
from models.tasks.superres.sources import DoesHarm, check_no_harm, held_out_report, other_sources, unseen_photos


def pil_bicubic(x: np.ndarray) -> np.ndarray:
    return np.stack([bicubic(a, 2) for a in x])


def colour_cast(x: np.ndarray) -> np.ndarray:
    out = pil_bicubic(x)
    out[:, 0] += 0.08  # what a net trained on one palette does to another: redder
    return out


@pytest.fixture(scope="module")
def report_for(mirror: Path):
    task = get_task("superres")
    cfg = task.config("tiny")
    data = task.load(mirror, cfg)
    return lambda run: held_out_report(run, data, cfg)


def test_other_sources_are_saturated_and_a_digit() -> None:
    images = other_sources()
    assert {"flower", "digit", "colour_bars", "gradient"} <= set(images)
    bars = np.asarray(images["colour_bars"])
    assert (bars.max(axis=2) - bars.min(axis=2)).mean() > 150  # saturated
    assert all(img.size == (128, 96) and img.mode == "RGB" for img in images.values())


def test_bicubic_itself_does_no_harm_but_is_not_better(report_for) -> None:
    report = report_for(pil_bicubic)
    gains = {k: v for k, v in report.items() if k.startswith("gain_db")}
    assert any(k.startswith("gain_db_photo_") for k in gains) and any(k.startswith("gain_db_other_") for k in gains)
    assert max(abs(g) for g in gains.values()) < 1e-6
    assert abs(report["psnr_numbered"] - report["baseline_psnr_numbered"]) < 1e-6
    with pytest.raises(DoesHarm, match="on average"):  # no image worse, but the model must be better on average
        check_no_harm(report, 0.05)


def test_a_model_better_on_average_and_nowhere_worse_passes() -> None:
    report = {"gain_db_other_gradient": -0.04, "gain_db_other_digit": 0.3, "gain_db_photo_grace_00": 0.2, "gain_db_numbered": 2.0}
    check_no_harm(report, 0.05)
    with pytest.raises(DoesHarm, match="gradient"):
        check_no_harm({**report, "gain_db_other_gradient": -0.06}, 0.05)


def test_the_unseen_photos_are_real_photos_of_other_kinds() -> None:
    photos = unseen_photos((96, 128))
    assert len(photos) >= 6 and {k.split("_")[0] for k in photos} == {"grace", "minduka"}
    for img in photos.values():
        arr = np.asarray(img, dtype=np.float64)
        assert img.size == (128, 96) and arr.std() > 10  # detailed, not flat


def test_a_colour_cast_is_caught(report_for) -> None:
    report = report_for(colour_cast)
    assert report["gain_db_unseen_min"] < -0.5
    with pytest.raises(DoesHarm, match="colour_bars"):
        check_no_harm(report, 0.05)
    check_no_harm(report, None)  # tiny configs (untrained models) do not check
