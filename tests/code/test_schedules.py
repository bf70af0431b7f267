"""Every registered task retrains on a schedule, or is listed as deliberately unscheduled."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.registry import task_names
from pipelines.schedule import DEFAULTS, ScheduleError, load_schedules


def test_every_registered_task_has_a_schedule() -> None:
    schedules = load_schedules(DEFAULTS)
    assert set(schedules) == set(task_names())
    for task in ("sales", "recommend"):  # nightly
        minute, hour, day, month, weekday = schedules[task]["cron"].split()
        assert (day, month, weekday) == ("*", "*", "*"), schedules[task]
    for task in ("classify", "segment", "superres", "sentiment"):  # weekly
        minute, hour, day, month, weekday = schedules[task]["cron"].split()
        assert (day, month) == ("*", "*") and weekday.isdigit(), schedules[task]


def test_a_task_left_out_stops_the_scheduler(tmp_path: Path) -> None:
    path = tmp_path / "schedules.yaml"
    path.write_text("recommend:\n  cron: '0 2 * * *'\n")
    with pytest.raises(ScheduleError, match="no schedule for classify") as info:
        load_schedules(path)
    assert "unscheduled" in str(info.value)


def test_a_deliberately_unscheduled_task_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "schedules.yaml"
    others = "".join(f"  {t}: retrained by hand\n" for t in task_names() if t != "recommend")
    path.write_text(f"recommend:\n  cron: '0 2 * * *'\nunscheduled:\n{others}")
    assert list(load_schedules(path)) == ["recommend"]


@pytest.mark.parametrize(
    "text, message",
    [
        ("recommend: {config: demo}\n", "recommend has no cron"),
        ("recomend:\n  cron: '0 2 * * *'\n", "unknown task 'recomend'"),
        ("recommend:\n  cron: '0 2 * * *'\nunscheduled:\n  recommend: no\n", "both scheduled and listed"),
        ("- recommend\n", "expected a mapping"),
    ],
)
def test_a_malformed_schedules_file_is_refused(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "schedules.yaml"
    path.write_text(text)
    with pytest.raises(ScheduleError, match=message):
        load_schedules(path)


def test_zoo_schedule_refuses_to_start_without_a_schedule_for_every_task(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from conftest import zoo_cli

    path = tmp_path / "schedules.yaml"
    path.write_text("recommend:\n  cron: '0 2 * * *'\n")
    monkeypatch.setenv("ZOO_SCHEDULES", str(path))
    result = zoo_cli("schedule")
    assert result.exit_code != 0
    assert "no schedule for classify" in result.output


def test_gpus_and_nodes_are_kept_for_the_work_pool(tmp_path: Path) -> None:
    path = tmp_path / "schedules.yaml"
    path.write_text("recommend:\n  cron: '0 2 * * *'\n  gpus: 4\n  nodes: 2\nunscheduled:\n" + "".join(f"  {t}: by hand\n" for t in task_names() if t != "recommend"))
    entry = load_schedules(path)["recommend"]
    assert (entry["gpus"], entry["nodes"]) == (4, 2)
    assert load_schedules(DEFAULTS)["classify"]["gpus"] == 4


@pytest.mark.parametrize("key", ["gpus", "nodes"])
@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5", "true", "null"])
def test_a_bad_gpu_or_node_count_is_refused(tmp_path: Path, key: str, value: str) -> None:
    path = tmp_path / "schedules.yaml"
    path.write_text(f"recommend:\n  cron: '0 2 * * *'\n  {key}: {value}\n")
    with pytest.raises(ScheduleError, match=f"recommend: {key} must be an integer of 1 or more") as info:
        load_schedules(path)
    assert str(path) in str(info.value)
