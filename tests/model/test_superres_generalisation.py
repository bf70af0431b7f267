"""``superres`` must not be worse than bicubic on images unlike its training photos: the check and its report."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.registry import get_task
from models.tasks.superres import DoesHarm, bicubic, check_no_harm, other_sources


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
    return lambda run: task.held_out_report(run, data, cfg)


def test_other_sources_are_saturated_and_a_digit() -> None:
    images = other_sources()
    assert {"flower", "digit", "colour_bars", "gradient"} <= set(images)
    bars = np.asarray(images["colour_bars"])
    assert (bars.max(axis=2) - bars.min(axis=2)).mean() > 150  # saturated
    assert all(img.size == (128, 96) and img.mode == "RGB" for img in images.values())


def test_bicubic_itself_does_no_harm(report_for) -> None:
    report = report_for(pil_bicubic)
    gains = [v for k, v in report.items() if k.startswith("gain_db")]
    assert gains and max(abs(g) for g in gains) < 1e-6
    assert abs(report["psnr_numbered"] - report["baseline_psnr_numbered"]) < 1e-6
    check_no_harm(report, 0.05)


def test_a_colour_cast_is_caught(report_for) -> None:
    report = report_for(colour_cast)
    assert report["gain_db_other_min"] < -0.5
    with pytest.raises(DoesHarm, match="colour_bars"):
        check_no_harm(report, 0.05)
    check_no_harm(report, None)  # tiny configs (untrained models) do not check
