"""The ``sentiment`` service in a real ``bentoml serve``, called with BentoML's client and plain HTTP."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import bentoml
import httpx
import pytest
from conftest import SERVED_ENV

pytestmark = pytest.mark.slow
MAX_TEXTS = int(SERVED_ENV["ZOO_MAX_TEXTS"])
POSITIVE = "A great and wonderful film. I loved it, the best story this year!"
NEGATIVE = "An awful, boring movie. I hated the plot; the worst film and a waste."




def test_a_label_and_probability_per_text(client: bentoml.SyncHTTPClient) -> None:
    result = client.sentiment(texts=[POSITIVE, NEGATIVE])
    assert result["model_version"] and result["max_tokens"] > 0
    assert len(result["predictions"]) == 2
    for p in result["predictions"]:
        assert p["label"] in ("negative", "positive")
        assert 0.5 <= p["probability"] <= 1.0
        assert p["truncated"] is False and 1 < p["tokens"] < result["max_tokens"]


def test_a_long_text_is_cut_to_max_tokens_and_flagged(client: bentoml.SyncHTTPClient) -> None:
    result = client.sentiment(texts=[" ".join([NEGATIVE] * 200), POSITIVE])
    long, short = result["predictions"]
    assert long["truncated"] is True and long["tokens"] == result["max_tokens"]
    assert short["truncated"] is False


def test_answers_do_not_depend_on_the_other_texts_or_concurrent_requests(server: str) -> None:
    texts = [POSITIVE, NEGATIVE, POSITIVE + " " + NEGATIVE, "Fine.", " ".join([POSITIVE] * 30)]

    def one(text: str) -> float:
        r = httpx.post(f"{server}/sentiment", json={"texts": [text]}, timeout=60)
        assert r.status_code == 200, r.text
        p = r.json()["predictions"][0]
        return p["probability"] if p["label"] == "positive" else 1 - p["probability"]

    alone = [one(t) for t in texts]
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(one, texts * 3))
    assert together == pytest.approx(alone * 3, abs=1e-5)
    batch = httpx.post(f"{server}/sentiment", json={"texts": texts}, timeout=60).json()["predictions"]
    in_one = [p["probability"] if p["label"] == "positive" else 1 - p["probability"] for p in batch]
    assert in_one == pytest.approx(alone, abs=1e-5)


def test_plain_http_carries_the_model_version(server: str) -> None:
    r = httpx.post(f"{server}/sentiment", json={"texts": [POSITIVE]})
    assert r.status_code == 200
    assert r.headers["x-model-version"] == r.json()["model_version"]


@pytest.mark.parametrize(
    "payload, status, reason",
    [
        ({"texts": []}, 400, "empty"),
        ({"texts": [POSITIVE, ""]}, 400, "empty_text"),
        ({"texts": ["   \n"]}, 400, "empty_text"),
        ({"texts": [POSITIVE, 3]}, 400, None),
        ({"texts": [None]}, 400, None),
        ({"texts": [["nested"]]}, 400, None),
        ({"texts": "one string, not a list"}, 400, None),
        ({}, 400, None),
        ({"texts": [POSITIVE] * (MAX_TEXTS + 1)}, 413, "too_many"),
    ],
)
def test_bad_input_is_a_4xx_with_a_message(server: str, payload: dict, status: int, reason: str | None) -> None:
    r = httpx.post(f"{server}/sentiment", json=payload)
    assert r.status_code == status, r.text
    if reason:
        assert r.json()["reason"] == reason and r.json()["error"]
    else:  # rejected by the request schema: the message names the field
        assert "texts" in r.text, r.text


def test_the_client_sees_a_clear_error(client: bentoml.SyncHTTPClient) -> None:
    with pytest.raises(bentoml.exceptions.BentoMLException) as info:
        client.sentiment(texts=[])
    assert "texts is empty" in str(info.value)
    with pytest.raises(bentoml.exceptions.BentoMLException) as info:
        client.sentiment(texts=[POSITIVE] * (MAX_TEXTS + 1))
    assert "ZOO_MAX_TEXTS" in str(info.value)


def test_metrics_count_predictions_and_rejections(server: str) -> None:
    httpx.post(f"{server}/sentiment", json={"texts": [POSITIVE]})
    httpx.post(f"{server}/sentiment", json={"texts": [""]})
    text = httpx.get(f"{server}/metrics").text
    assert 'zoo_model_version{task="sentiment"}' in text
    assert 'zoo_input_rejections_total{reason="empty_text",task="sentiment"}' in text


def test_the_all_in_one_service_has_the_route() -> None:
    from services.zoo import Zoo

    assert Zoo.inner.routes()["/sentiment"] == "sentiment"
