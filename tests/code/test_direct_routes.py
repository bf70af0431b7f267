"""A JSON API answered on its direct route says exactly what BentoML's router says for the same request."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any

import bentoml
import pytest
from pydantic import BaseModel, Field
from starlette.responses import JSONResponse
from starlette.testclient import TestClient

from services.auth import Tokens
from services.direct import direct_routes, takes_json
from services.inference_protocol import INSTANCES
from services.middleware import ZooMiddleware


class Doubled(BaseModel):
    ids: list[int]
    scale: float


class Echo:
    """A JSON API shaped like the task APIs: typed fields, a context, an error answer, a header."""

    def __init__(self) -> None:
        INSTANCES.append(self)  # as ZooService does: the direct routes call this worker's instance
        self.factor = 2

    @bentoml.api(route="/double")
    async def double(
        self,
        ids: Annotated[list[Annotated[int, Field(strict=True, ge=0)]], Field(min_length=1)],
        ctx: bentoml.Context,
        scale: Annotated[float, Field(gt=0)] = 1.0,
    ) -> Doubled:
        if 13 in ids:
            ctx.response.status_code = 422
            return JSONResponse({"error": "13 is unlucky", "reason": "unlucky"}, status_code=422, headers={"X-Zoo-Rejection": "unlucky"})  # type: ignore[return-value]
        if 666 in ids:
            raise RuntimeError("a bug in the API")
        ctx.response.headers["X-Echo"] = ctx.request.headers.get("x-caller", "nobody")
        return Doubled(ids=[i * self.factor for i in ids], scale=scale)

    @bentoml.api(route="/upload")
    async def upload(self, image: Path) -> str:
        return "files are not direct"

    @bentoml.api(route="/count")
    def count(self, ids: list[int]) -> int:
        return len(ids)  # a plain function: BentoML runs it in a thread


def _client(direct: bool) -> TestClient:
    service = bentoml.service(name=f"echo-{'direct' if direct else 'router'}", metrics={"enabled": False})(Echo)  # one process: one set of BentoML metrics
    service.add_asgi_middleware(
        ZooMiddleware, routes={"/double": "echo"}, max_body_bytes=10_000, tasks=["echo"], api_tokens=Tokens(()), metrics_tokens=Tokens(()),
        direct=direct_routes(service) if direct else {},
    )
    return TestClient(service.to_asgi(), raise_server_exceptions=False)


REQUESTS = [
    (b'{"ids": [1, 2, 3]}', "application/json"),
    (b'{"ids": [1], "scale": 0.5}', "application/json; charset=utf-8"),
    (b'{"ids": [4]}', None),
    (b'{"ids": []}', "application/json"),
    (b'{"ids": [-1, "x"]}', "application/json"),
    (b'{"ids": [1], "scale": 0}', "application/json"),
    (b"not json", "application/json"),
    (b"", "application/json"),
    (b"[1, 2]", "application/json"),
    (b'{"ids": [13]}', "application/json"),
    (b'{"ids": [666]}', "application/json"),
]


@pytest.fixture(scope="module")
def clients() -> Any:
    with _client(direct=True) as direct, _client(direct=False) as router:
        yield direct, router


def test_only_json_apis_are_direct() -> None:
    service = bentoml.service(name="echo-routes")(Echo)
    assert set(direct_routes(service)) == {"/double"}
    assert not takes_json(service.apis["upload"]) and not takes_json(service.apis["count"])


@pytest.mark.parametrize(("body", "ctype"), REQUESTS)
def test_the_direct_route_answers_like_bentomls_router(clients: Any, body: bytes, ctype: str | None) -> None:
    direct, router = clients
    headers = {"X-Caller": "test", **({"Content-Type": ctype} if ctype else {})}
    a, b = direct.post("/double", content=body, headers=headers), router.post("/double", content=body, headers=headers)
    assert a.status_code == b.status_code
    assert a.json() == b.json()
    for name in ("content-type", "x-echo", "x-zoo-rejection"):
        assert a.headers.get(name) == b.headers.get(name), name
    if a.status_code == 200:
        assert a.headers["x-echo"] == "test"
        assert a.json()["ids"] == [2 * i for i in json.loads(body)["ids"]]
    else:
        assert a.status_code in (400, 422, 500)
        assert "error" in a.json()


def test_other_methods_and_bodies_still_go_through_bentoml(clients: Any) -> None:
    direct, router = clients
    assert direct.get("/double").status_code == router.get("/double").status_code == 405
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    a, b = direct.post("/double", content=b"ids=1", headers=form), router.post("/double", content=b"ids=1", headers=form)
    assert (a.status_code, a.json()) == (b.status_code, b.json())


def test_a_body_in_chunks_is_read_whole_and_a_client_gone_before_its_end_gets_nothing() -> None:
    route = direct_routes(bentoml.service(name="echo-chunks", metrics={"enabled": False})(Echo))["/double"]
    Echo()  # this worker's instance
    scope = {"type": "http", "method": "POST", "path": "/double", "headers": [(b"content-type", b"application/json")]}

    def answer(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        pending, sent = iter(messages), []

        async def receive() -> dict[str, Any]:
            return next(pending)

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        asyncio.run(route(scope, receive, send))
        return sent

    whole = answer([{"type": "http.request", "body": b'{"ids": [1', "more_body": True}, {"type": "http.request", "body": b", 5]}"}])
    assert whole[0]["status"] == 200 and json.loads(whole[1]["body"]) == {"ids": [2, 10], "scale": 1.0}
    assert answer([{"type": "http.request", "body": b'{"ids": [1', "more_body": True}, {"type": "http.disconnect"}]) == []


@pytest.mark.parametrize("gone", ["mid_upload", "before_the_body"])
def test_a_client_gone_before_its_whole_body_never_reaches_bentomls_router_and_the_request_ends_with_499(clients: Any, gone: str) -> None:
    """BentoML's router answered these with a 500 and logged a traceback (ClientDisconnect): a hang-up looked like a server error."""
    _, router = clients
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http", "path": "/double",
        "raw_path": b"/double", "query_string": b"", "root_path": "", "headers": [(b"content-type", b"application/json"), (b"content-length", b"40")],
        "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 3000),
    }  # fmt: skip
    messages = [{"type": "http.request", "body": b'{"ids": [1', "more_body": True}] if gone == "mid_upload" else []
    messages.append({"type": "http.disconnect"})

    async def call() -> list[dict[str, Any]]:
        pending, sent = iter(messages), []

        async def receive() -> dict[str, Any]:
            return next(pending, {"type": "http.disconnect"})

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await router.app(scope, receive, send)
        return sent

    sent = router.portal.call(call)
    assert [m["status"] for m in sent if m["type"] == "http.response.start"] == [499]


def test_every_v2_path_goes_to_the_protocol_app_so_its_answers_are_json(monkeypatch: pytest.MonkeyPatch) -> None:
    """BentoML's mount at /v2 does not match a path with a newline in it, and its router answered in plain text (make fuzz)."""
    from starlette.responses import PlainTextResponse

    from services import inference_protocol
    from services.inference_protocol import protocol_app

    monkeypatch.setattr(inference_protocol, "INSTANCES", [])  # no service started: the model routes answer 503 (JSON)

    async def bentoml_router(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await PlainTextResponse("Not Found", status_code=404)(scope, receive, send)

    app = ZooMiddleware(bentoml_router, routes={}, max_body_bytes=10_000, tasks=["echo"], api_tokens=Tokens(()), metrics_tokens=Tokens(()), protocol=protocol_app())
    client = TestClient(app)  # no lifespan: the stand-in router has none
    for path in ("/v2/models/echo%0A/ready", "/v2/models/a%0Ab/versions/1", "/v2/no%0Asuch/route", "/v2/health/live"):
        r = client.get(path)
        assert r.headers["content-type"] == "application/json", (path, r.status_code, r.text)
    assert client.get("/v2/health/live").json() == {"live": True} and client.get("/elsewhere").text == "Not Found"
