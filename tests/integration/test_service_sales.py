"""The ``/sales`` API in a real ``bentoml serve``, called with BentoML's client and plain HTTP."""

from __future__ import annotations

import json
import re

import bentoml
import httpx
import pytest
from conftest import SERVED_ENV

pytestmark = pytest.mark.slow
MAX_RECORDS = int(SERVED_ENV["ZOO_MAX_RECORDS"])



def record(**overrides: object) -> dict:
    base = {"Store": 1, "Date": "2015-07-31", "Open": 1, "Promo": 1, "StateHoliday": "0", "SchoolHoliday": 1}
    return {**base, **overrides}


def post(server: str, body: str | dict) -> httpx.Response:
    content = body if isinstance(body, str) else json.dumps(body)
    return httpx.post(f"{server}/sales", content=content, headers={"content-type": "application/json"})


def test_sales_with_the_bentoml_client(server: str) -> None:
    records = [record(), record(Store=2, Promo=0, DayOfWeek=5, Id=7), record(Store=3, Open=0)]
    with bentoml.SyncHTTPClient(server) as client:
        result = client.sales(records=records)
    assert result["model_version"]
    preds = result["predictions"]
    assert [p["Store"] for p in preds] == [1, 2, 3] and preds[1]["Id"] == 7
    assert preds[0]["sales"] > 0 and preds[1]["sales"] > 0 and preds[2]["sales"] == 0
    assert all(p["unknown"] == [] for p in preds)


def test_plain_http_carries_the_model_version(server: str) -> None:
    r = post(server, {"records": [record()]})
    assert r.status_code == 200, r.text
    assert r.headers["x-model-version"] == r.json()["model_version"]


def test_an_unknown_store_is_served_and_counted(server: str) -> None:
    before = _unknown_count(server, "Store")
    r = post(server, {"records": [record(Store=987654), record()]})
    assert r.status_code == 200, r.text
    first, second = r.json()["predictions"]
    assert first["unknown"] == ["Store"] and first["sales"] > 0 and second["unknown"] == []
    assert _unknown_count(server, "Store") == before + 1
    r = post(server, {"records": [record(StateHoliday="z")]})
    assert r.status_code == 200 and r.json()["predictions"][0]["unknown"] == ["StateHoliday"]
    assert _unknown_count(server, "StateHoliday") >= 1


def _unknown_count(server: str, field: str) -> float:
    text = httpx.get(f"{server}/metrics").text
    m = re.search(rf'^zoo_unknown_inputs_total\{{field="{field}",task="sales"\}} (\S+)$', text, re.M)
    return float(m.group(1)) if m else 0.0


@pytest.mark.parametrize(
    "body, field",
    [
        ('{"records": [{"Store": 1, "Date": "2015-07-31", "Open": NaN, "Promo": 1, "StateHoliday": "0", "SchoolHoliday": 1}]}', "Open"),
        ('{"records": [{"Store": 1, "Date": "2015-07-31", "Open": 1, "Promo": Infinity, "StateHoliday": "0", "SchoolHoliday": 1}]}', "Promo"),
        ('{"records": [{"Store": -Infinity, "Date": "2015-07-31", "Open": 1, "Promo": 1, "StateHoliday": "0", "SchoolHoliday": 1}]}', "Store"),
        ({"records": [{k: v for k, v in record().items() if k != "Promo"}]}, "Promo"),
        ({"records": [record(), {k: v for k, v in record().items() if k != "Date"}]}, "Date"),
        ({"records": [record(Store="1")]}, "Store"),
        ({"records": [record(Store=1.5)]}, "Store"),
        ({"records": [record(Open=True)]}, "Open"),
        ({"records": [record(Open=2)]}, "Open"),
        ({"records": [record(StateHoliday=0)]}, "StateHoliday"),
        ({"records": [record(SchoolHoliday=None)]}, "SchoolHoliday"),
        ({"records": [record(Date="2015-02-30")]}, "Date"),
        ({"records": [record(Date="31.07.2015")]}, "Date"),
        ({"records": [record(DayOfWeek=8)]}, "DayOfWeek"),
        ({"records": "nope"}, "records"),
        ({}, "records"),
    ],
)
def test_bad_records_are_400_naming_the_field(server: str, body: str | dict, field: str) -> None:
    r = post(server, body)
    assert r.status_code == 400, r.text
    assert "x-model-version" in r.headers
    payload = r.json()
    assert field in json.dumps(payload.get("detail", payload)), payload


def test_a_weekday_that_contradicts_the_date_is_400(server: str) -> None:
    r = post(server, {"records": [record(), record(DayOfWeek=1)]})  # 2015-07-31 is a Friday
    assert r.status_code == 400, r.text
    assert r.json()["reason"] == "day_of_week_mismatch"
    assert "records[1].DayOfWeek" in r.json()["error"] and "Friday" in r.json()["error"]


def test_empty_and_too_many_records(server: str) -> None:
    r = post(server, {"records": []})
    assert r.status_code == 400 and r.json()["reason"] == "empty", r.text
    r = post(server, {"records": [record()] * (MAX_RECORDS + 1)})
    assert r.status_code == 413 and r.json()["reason"] == "too_many", r.text
    assert str(MAX_RECORDS) in r.json()["error"]
    assert post(server, {"records": [record()] * MAX_RECORDS}).status_code == 200


def test_the_client_sees_a_clear_error(server: str) -> None:
    with bentoml.SyncHTTPClient(server) as client:
        with pytest.raises(bentoml.exceptions.BentoMLException) as info:
            client.sales(records=[])
    assert "records is empty" in str(info.value)


def test_rejections_are_counted(server: str) -> None:
    post(server, {"records": []})
    text = httpx.get(f"{server}/metrics").text
    assert 'zoo_input_rejections_total{reason="empty",task="sales"}' in text
    assert 'zoo_predictions_total{model_version="' in text and 'task="sales"' in text
