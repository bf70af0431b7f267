"""The Open Inference Protocol (KServe v2 REST) on a real ``bentoml serve``, called with Triton's own client."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest

from models.registry import task_names

pytestmark = pytest.mark.slow


@pytest.fixture()
def triton(server: str):
    import tritonclient.http as httpclient

    with httpclient.InferenceServerClient(url=server.removeprefix("http://"), network_timeout=120) as client:
        yield client


def test_health_and_metadata_come_from_the_spec(triton, server: str) -> None:
    assert triton.is_server_live() and triton.is_server_ready()
    assert triton.is_model_ready("recommend")
    meta = triton.get_model_metadata("recommend")
    assert meta["name"] == "recommend" and meta["platform"] == "onnxruntime_onnx" and meta["versions"]
    assert meta["inputs"] == [{"name": "user", "datatype": "INT64", "shape": [-1]}, {"name": "movie", "datatype": "INT64", "shape": [-1]}]
    assert meta["outputs"] == [{"name": "rating", "datatype": "FP32", "shape": [-1]}]
    image = triton.get_model_metadata("classify")["inputs"][0]
    assert image["datatype"] == "FP32" and image["shape"][0] == -1 and all(d > 0 for d in image["shape"][1:])
    assert httpx.get(f"{server}/v2").json()["extensions"] == ["binary_tensor_data"]


@pytest.mark.parametrize("binary", [True, False])
def test_infer_gives_what_the_task_api_gives(triton, server: str, binary: bool) -> None:
    import tritonclient.http as httpclient

    rated = httpx.post(f"{server}/rate", json={"user_ids": [100, 101], "movie_ids": [1000, 1001]}).json()["ratings"]
    users = np.asarray([[1, 2]], dtype=np.int64)  # the model's own indices: the first two known users
    meta = httpx.get(f"{server}/v2/models/recommend").json()
    assert meta["versions"]
    inputs = [httpclient.InferInput("user", [2], "INT64"), httpclient.InferInput("movie", [2], "INT64")]
    inputs[0].set_data_from_numpy(users[0], binary_data=binary)
    inputs[1].set_data_from_numpy(np.asarray([1, 2], dtype=np.int64), binary_data=binary)
    outputs = None if binary else [httpclient.InferRequestedOutput("rating", binary_data=False)]
    result = triton.infer("recommend", inputs, outputs=outputs, request_id="r1")
    ratings = result.as_numpy("rating")
    assert ratings.shape == (2,) and ratings.dtype == np.float32 and np.all((0 <= ratings) & (ratings <= 5.5))
    assert result.get_response()["id"] == "r1" and result.get_response()["model_version"]
    assert len(rated) == 2  # the task API answers beside the protocol


def test_the_protocol_answers_bad_requests_with_400s(server: str) -> None:
    url = f"{server}/v2/models/recommend/infer"

    def post(body: object, **kw) -> httpx.Response:
        return httpx.post(url, content=json.dumps(body) if not isinstance(body, bytes) else body, **kw)

    good = {"inputs": [{"name": "user", "shape": [1], "datatype": "INT64", "data": [1]}, {"name": "movie", "shape": [1], "datatype": "INT64", "data": [1]}]}
    ok = post(good)
    assert ok.status_code == 200, ok.text
    assert ok.headers["x-model-version"] == ok.json()["model_version"]
    cases = [
        (b"not json", 400),
        ({"inputs": "x"}, 400),
        ({"inputs": good["inputs"][:1]}, 400),
        ({"inputs": [{**good["inputs"][0], "datatype": "FP32"}, good["inputs"][1]]}, 400),
        ({"inputs": [{**good["inputs"][0], "shape": [2]}, good["inputs"][1]]}, 400),
        ({"inputs": [{**good["inputs"][0], "data": [1.5]}, good["inputs"][1]]}, 400),
        ({"inputs": [{**good["inputs"][0], "data": [10**9]}, good["inputs"][1]]}, 400),  # beyond the embedding
        ({"inputs": [{**good["inputs"][0], "shape": [0], "data": []}, {**good["inputs"][1], "shape": [0], "data": []}]}, 400),
        # each of these answered 500 before the protocol's own fields were checked
        ({**good, "parameters": [1]}, 400),
        ({"inputs": [{**good["inputs"][0], "parameters": "x"}, good["inputs"][1]]}, 400),
        ({"inputs": [{**good["inputs"][0], "name": ["user"]}, good["inputs"][1]]}, 400),
        ({**good, "outputs": [{"name": "rating", "parameters": [True]}]}, 400),
        (b'{"inputs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", 400),
        ({**good, "id": {"a": 1}}, 400),  # echoed as an object, against the protocol's string
        ({**good, "outputs": [{"name": "nope"}]}, 400),
    ]
    for body, status in cases:
        r = post(body)
        assert r.status_code == status, (body, r.status_code, r.text)
        assert "error" in r.json()
    assert httpx.post(f"{server}/v2/models/nope/infer", content=json.dumps(good)).status_code == 404
    assert httpx.get(f"{server}/v2/models/recommend/versions/999").status_code == 404
    nan = {"inputs": [{"name": "image", "shape": [1, 3, 28, 28], "datatype": "FP32", "data": [float("nan")] * (3 * 28 * 28)}]}
    r = httpx.post(f"{server}/v2/models/classify/infer", content=json.dumps(nan).replace("NaN", "NaN"))
    assert r.status_code == 400, r.text
    big = post({"inputs": [{**good["inputs"][0], "shape": [10**6]}, {**good["inputs"][1], "shape": [10**6]}]})
    assert big.status_code == 413, big.text


def test_the_protocol_routes_are_in_the_openapi_document_and_unknown_ones_answer_json(server: str) -> None:
    paths = httpx.get(f"{server}/docs.json").json()["paths"]
    infer = paths["/v2/models/{task}/infer"]["post"]
    served = infer["parameters"][0]["schema"]["enum"]
    assert "recommend" in served and set(served) <= set(task_names()) and {"200", "400", "404", "413", "503"} <= set(infer["responses"])
    assert set(infer["requestBody"]["content"]) == {"application/json", "application/octet-stream"}  # JSON, or the binary extension
    assert {"/v2", "/v2/health/live", "/v2/health/ready", "/v2/models/{task}", "/v2/models/{task}/versions/{version}/infer"} <= set(paths)
    for r in (httpx.get(f"{server}/v2/nothing/here"), httpx.delete(f"{server}/v2/health/live")):
        assert r.status_code in (404, 405) and r.headers["content-type"] == "application/json" and r.json()["error"]
    allow = httpx.delete(f"{server}/v2/health/live").headers["allow"]  # Starlette lists a route's methods in set order
    assert sorted(m.strip() for m in allow.split(",")) == ["GET", "HEAD"]
