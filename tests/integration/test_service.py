"""A real ``bentoml serve`` subprocess, called with BentoML's own client and plain HTTP."""

from __future__ import annotations

import base64
import io
import re
import time
from pathlib import Path

import bentoml
import httpx
import numpy as np
import pytest
from conftest import SERVED_ENV
from PIL import Image

from models.settings import Settings
from pipelines.serving import running_server

pytestmark = pytest.mark.slow
BODY_CAP = int(SERVED_ENV["ZOO_MAX_BODY_BYTES"])




def png_bytes(width: int, height: int, color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, format="PNG")
    return buf.getvalue()


def test_classify_with_bentoml_client(client: bentoml.SyncHTTPClient, mirror: Path) -> None:
    image = sorted((mirror / "mnist_tiny" / "valid" / "7").glob("*.png"))[0]
    result = client.classify(image=image, k=2)
    assert result["model_version"]
    labels = [p["label"] for p in result["predictions"]]
    assert sorted(labels) == ["3", "7"]
    assert abs(sum(p["probability"] for p in result["predictions"]) - 1) < 1e-4


def test_classify_explains_its_top_class_with_a_heatmap(client: bentoml.SyncHTTPClient, server: str, mirror: Path) -> None:
    image = sorted((mirror / "mnist_tiny" / "valid" / "7").glob("*.png"))[0]
    result = client.classify(image=image, k=1, explain=True)
    heat = Image.open(io.BytesIO(base64.b64decode(result["heatmap_png"])))
    assert heat.format == "PNG" and heat.size == (224, 224) and heat.mode == "RGB"  # the 28x28 digit, drawn at 224
    assert len(result["predictions"]) == 1
    files = {"image": ("x.png", png_bytes(120, 60), "image/png")}
    explained = httpx.post(f"{server}/classify", files=files, data={"explain": "true"}, timeout=60).json()
    assert Image.open(io.BytesIO(base64.b64decode(explained["heatmap_png"]))).size == (448, 224)  # the photo's shape
    assert httpx.post(f"{server}/classify", files=files, timeout=60).json()["heatmap_png"] is None
    r = httpx.post(f"{server}/classify", files=files, data={"explain": "perhaps"}, timeout=60)
    assert r.status_code == 400 and "explain" in r.json()["error"]


def test_classify_k_is_capped_by_the_classes(client: bentoml.SyncHTTPClient, mirror: Path) -> None:
    image = sorted((mirror / "mnist_tiny" / "valid" / "3").glob("*.png"))[0]
    assert len(client.classify(image=image, k=50)["predictions"]) == 2


def test_recommend_and_rate(client: bentoml.SyncHTTPClient) -> None:
    rec = client.recommend(user_id=100, k=3)
    assert rec["known_user"] is True and rec["popular"] is False
    assert len(rec["movies"]) == 3
    scores = [m["rating"] for m in rec["movies"]]
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 5.5 for s in scores)
    unknown = client.recommend(user_id=424242, k=4)
    assert unknown["known_user"] is False and unknown["popular"] is True and len(unknown["movies"]) == 4
    rated = client.rate(user_ids=[100, 424242], movie_ids=[1000, 1001])
    assert [r["known_user"] for r in rated["ratings"]] == [True, False]


def test_plain_http_carries_the_model_version(server: str) -> None:
    r = httpx.post(f"{server}/recommend", json={"user_id": 100, "k": 2})
    assert r.status_code == 200
    assert r.headers["x-model-version"] == r.json()["model_version"]


@pytest.mark.parametrize(
    "payload, reason",
    [
        ({"user_id": "abc"}, None),
        ({"user_id": 1.5}, None),
        ({"user_id": 100, "k": 0}, None),
        ({"user_id": 100, "k": 1000}, None),
        ({}, None),
        ({"user_id": 2**70}, None),
        ({"user_id": -1}, None),
        ({"user_id": True}, None),
    ],
)
def test_recommend_bad_input_is_400(server: str, payload: dict, reason: str | None) -> None:
    r = httpx.post(f"{server}/recommend", json=payload)
    assert r.status_code == 400, r.text
    assert "x-model-version" in r.headers
    body = r.json()  # the shape /docs.json declares for a 400: strings, also where pydantic refused the request
    assert isinstance(body["error"], str) and isinstance(body.get("detail", ""), str) and body["reason"], body


@pytest.mark.parametrize(
    "payload, status, reason",
    [
        ({"user_ids": [1, 2], "movie_ids": [1]}, 400, "length_mismatch"),
        ({"user_ids": [], "movie_ids": []}, 400, "empty"),
        ({"user_ids": ["x"], "movie_ids": [1]}, 400, None),
        ({"user_ids": [2**64], "movie_ids": [1]}, 400, None),
        ({"user_ids": [1, None], "movie_ids": [1, 2]}, 400, None),
        ({"user_ids": list(range(10_001)), "movie_ids": list(range(10_001))}, 413, "too_many"),
    ],
)
def test_rate_bad_input(server: str, payload: dict, status: int, reason: str | None) -> None:
    r = httpx.post(f"{server}/rate", json=payload)
    assert r.status_code == status, r.text
    if reason:
        assert r.json()["reason"] == reason and r.json()["error"]


def test_not_an_image_is_400(server: str) -> None:
    r = httpx.post(f"{server}/classify", files={"image": ("x.png", b"this is not a png", "image/png")})
    assert r.status_code == 400, r.text
    assert r.json()["reason"] == "not_an_image"


def test_an_image_sent_as_octet_stream_is_accepted(server: str) -> None:
    r = httpx.post(f"{server}/classify", files={"image": ("x.bin", png_bytes(20, 20), "application/octet-stream")})
    assert r.status_code == 200, r.text


def test_pixel_bomb_is_413(server: str) -> None:
    r = httpx.post(f"{server}/classify", files={"image": ("bomb.png", png_bytes(3000, 2000), "image/png")})
    assert r.status_code == 413, r.text
    assert r.json()["reason"] == "too_many_pixels"


def test_body_over_the_cap_is_413(server: str) -> None:
    noise = np.random.default_rng(0).integers(0, 255, size=(400, 400, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, format="PNG")
    assert len(buf.getvalue()) > BODY_CAP
    r = httpx.post(f"{server}/classify", files={"image": ("big.png", buf.getvalue(), "image/png")})
    assert r.status_code == 413, r.text


def test_client_sees_a_clear_error(client: bentoml.SyncHTTPClient, tmp_path: Path) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"nope")
    with pytest.raises(bentoml.exceptions.BentoMLException) as info:
        client.classify(image=bad)
    assert "not a decodable image" in str(info.value)


def test_health_and_metrics(server: str) -> None:
    assert httpx.get(f"{server}/livez").status_code == 200
    assert httpx.get(f"{server}/readyz").status_code == 200
    httpx.post(f"{server}/recommend", json={"user_id": 100, "k": 1})
    httpx.post(f"{server}/rate", json={"user_ids": [1], "movie_ids": []})
    text = httpx.get(f"{server}/metrics").text
    assert 'zoo_model_version{task="recommend"}' in text
    assert 'zoo_predictions_total{model_version="' in text
    assert 'zoo_input_rejections_total{reason="length_mismatch",task="recommend"}' in text
    assert "bentoml_service_request_total" in text
    assert re.search(r'zoo_event_loop_tasks\{pid="\d+"\} [1-9]', text)  # each worker's asyncio tasks, sampled from its first request on


def test_not_ready_without_a_champion(tmp_path: Path, mirror: Path, project: Settings) -> None:
    empty = Settings.from_env({"ZOO_HOME": str(tmp_path / "empty"), "ZOO_PROJECT_ROOT": str(project.project_root)})
    env = {"ZOO_HOME": str(empty.home), "MLFLOW_TRACKING_URI": empty.tracking_uri, "MLFLOW_REGISTRY_URI": empty.registry_uri}
    with running_server(empty, extra_env=env) as url:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # up (livez), whether or not ready
            try:
                if httpx.get(f"{url}/livez", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        assert httpx.get(f"{url}/readyz").status_code == 503
        r = httpx.post(f"{url}/recommend", json={"user_id": 1})
        assert r.status_code == 503 and "no task has a champion" in r.json()["error"]


def test_the_api_server_runs_two_workers(server: str) -> None:
    for _ in range(4):  # new connections: either worker may take them
        assert httpx.post(f"{server}/rate", json={"user_ids": [1], "movie_ids": [1]}).status_code == 200
    pids = set(re.findall(r'pid="(\d+)"', httpx.get(f"{server}/metrics").text))
    assert len(pids) == int(SERVED_ENV["ZOO_WORKERS"]) == 2


def test_a_chunked_body_over_the_cap_is_413(server: str) -> None:
    """The cap counts the bytes as they arrive: a chunked upload without Content-Length cannot get past it."""

    def chunks():
        for _ in range(BODY_CAP // 65536 + 4):
            yield b"x" * 65536

    r = httpx.post(f"{server}/sentiment", content=chunks(), headers={"Content-Type": "application/json"})
    assert "content-length" not in {k.lower() for k in r.request.headers}
    assert r.status_code == 413, r.text
    assert r.json()["reason"] == "too_large"
    assert httpx.post(f"{server}/rate", json={"user_ids": [1], "movie_ids": [1]}).status_code == 200  # the server is fine


def test_a_malformed_setting_stops_the_server_with_one_line_naming_it(project: Settings, tmp_path: Path) -> None:
    import subprocess

    from pipelines.serving import serve_command, serve_env

    cmd = serve_command("recommend", 3999, host="127.0.0.1")
    env = serve_env(project, {"ZOO_MAX_TEXTS": "ten", "ZOO_WORKERS": "1", "BENTOML_HOME": str(tmp_path / "bentoml")})
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode != 0
    assert "ZOO_MAX_TEXTS='ten' is not a whole number" in proc.stdout + proc.stderr


def test_multipart_without_a_boundary_is_400_not_500(server: str) -> None:
    for route in ("/rate", "/classify", "/sales"):
        r = httpx.post(f"{server}{route}", content=b"--x\r\n", headers={"Content-Type": "multipart/form-data"})
        assert 400 <= r.status_code < 500, (route, r.status_code, r.text)


def test_a_malformed_multipart_body_is_400_not_500(server: str) -> None:
    boundary = "603ac1328847cebe9443be60866c9875"  # found by Schemathesis: BentoML answered 500
    for route in ("/classify", "/segment", "/superres"):
        r = httpx.post(
            f"{server}{route}", content=f"--{boundary}\r\n-759--{boundary}--\r\n".encode(), headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}
        )
        assert r.status_code == 400, (route, r.status_code, r.text)
        assert r.json()["reason"] == "bad_multipart" and "malformed" in r.json()["error"]


def test_the_declared_schema_says_what_is_required_and_what_may_be_null(server: str) -> None:
    paths = httpx.get(f"{server}/docs.json").json()["paths"]

    def body(route: str, kind: str = "application/json") -> dict:
        return paths[route]["post"]["requestBody"]["content"][kind]["schema"]["properties"]

    assert body("/sentiment")["texts"]["minItems"] == 1 and body("/sales")["records"]["minItems"] == 1
    assert body("/rate")["user_ids"]["minItems"] == body("/rate")["movie_ids"]["minItems"] == 1
    answer = paths["/segment"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]["properties"]
    assert answer["overlay_png"]["nullable"] is True  # null unless overlay=true
    classified = paths["/classify"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]["properties"]
    assert classified["heatmap_png"]["nullable"] is True  # null unless explain=true


def test_past_the_queue_limit_requests_get_503_with_retry_after(project: Settings, tmp_path: Path) -> None:
    """Backpressure: a burst well past what one worker takes is partly refused at once, the admitted answered; nothing else."""
    import asyncio

    from conftest import live_server

    photo = sorted((project.project_root / "data" / "camvid_tiny" / "images").iterdir())[0].read_bytes()
    # its own BENTOML_HOME: a server's shutdown clears the Prometheus files of every server sharing one
    env = {"ZOO_WORKERS": "1", "ZOO_QUEUE_LIMIT": "2", "ZOO_MAX_BATCH_SIZE": "1", "BENTOML_HOME": str(tmp_path / "bentoml")}
    with live_server(project, tmp_path / "serve.log", task="segment", env=env) as url:

        async def burst() -> list[httpx.Response]:
            # all 48 at once from one event loop: client threads starved of CPU by a busy machine sent them one by one
            limits = httpx.Limits(max_connections=48)
            async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as c:
                return await asyncio.gather(*(c.post("/segment", files={"image": ("p.png", photo, "image/png")}) for _ in range(48)))

        answers = asyncio.run(burst())
        codes = [r.status_code for r in answers]
        assert set(codes) <= {200, 503}, codes
        # at least the queue's two are taken (more when the burst spreads over the worker's first batches), the rest refused
        assert codes.count(200) >= 2 and codes.count(503) >= 1, codes
        refused = next(r for r in answers if r.status_code == 503)
        assert int(refused.headers["retry-after"]) >= 1 and refused.json()["reason"] == "queue_full"
        assert 'zoo_overload_rejections_total{reason="queue_full",task="segment"}' in httpx.get(f"{url}/metrics").text
        assert httpx.get(f"{url}/readyz").status_code == 200  # refusing is not falling over


def test_clients_that_hang_up_after_sending_are_not_computed_for(server: str) -> None:
    """24 superres uploads sent whole and their connections closed at once: the work of those still waiting is
    stopped and counted in ``zoo_abandoned_requests_total``, no task of theirs is left in the workers, and the
    server stays ready and answers the next caller."""
    import socket
    from urllib.parse import urlsplit

    def abandoned() -> float:
        text = httpx.get(f"{server}/metrics").text
        return sum(float(v) for v in re.findall(r'^zoo_abandoned_requests_total\{task="superres"\} (\S+)$', text, re.M))

    def loop_tasks() -> dict[str, float]:  # per worker, sampled every 5 s
        text = httpx.get(f"{server}/metrics").text
        return {pid: float(v) for pid, v in re.findall(r'^zoo_event_loop_tasks\{pid="(\d+)"\} (\S+)$', text, re.M)}

    noise = np.random.default_rng(0).integers(0, 256, (192, 192, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, format="PNG")
    request = httpx.Request("POST", f"{server}/superres", files={"image": ("noise.png", buf.getvalue(), "image/png")})
    body = request.read()
    head = "".join(f"{k}: {v}\r\n" for k, v in request.headers.items() if k.lower() != "connection")
    raw = f"POST /superres HTTP/1.1\r\n{head}Connection: close\r\n\r\n".encode() + body
    where = urlsplit(server)
    before = abandoned()
    idle = max(loop_tasks().values(), default=2.0)
    sockets = []
    for _ in range(24):
        sock = socket.create_connection((where.hostname, where.port), timeout=10)
        sock.sendall(raw)
        sockets.append(sock)
    time.sleep(0.2)  # the bodies are read and queued
    for sock in sockets:
        sock.close()
    deadline = time.monotonic() + 60
    while abandoned() == before and time.monotonic() < deadline:
        time.sleep(0.5)
    assert abandoned() > before
    # no request's task is left behind (BentoML's request timeout waited for an answer that never came)
    while time.monotonic() < deadline and max(loop_tasks().values(), default=0) > idle + 1:
        time.sleep(1)
    assert max(loop_tasks().values()) <= idle + 1, (idle, loop_tasks())
    assert httpx.get(f"{server}/readyz").status_code == 200
    r = httpx.post(f"{server}/superres", files={"image": ("noise.png", buf.getvalue(), "image/png")}, timeout=120)
    assert r.status_code == 200, r.text


def test_the_session_server_runs_without_torch(server: str) -> None:
    """Its worker processes start with PyTorch made unimportable (tests/no_torch): every task still answers."""
    assert "no_torch" in SERVED_ENV["PYTHONPATH"]
    for _ in range(4):
        assert httpx.post(f"{server}/rate", json={"user_ids": [100], "movie_ids": [1000]}).status_code == 200
    assert httpx.get(f"{server}/readyz").status_code == 200
    pids = set(re.findall(r'pid="(\d+)"', httpx.get(f"{server}/metrics").text))
    assert pids
    for pid in pids:  # no worker has PyTorch's library mapped
        maps = Path(f"/proc/{pid}/maps").read_text()
        assert "libtorch" not in maps and "onnxruntime" in maps
