"""The Open Inference Protocol (KServe v2 REST) beside the task APIs, on the models' own tensors.

``/v2``, ``/v2/health/live``, ``/v2/health/ready``, ``/v2/models/{task}`` (metadata
from the spec), ``/v2/models/{task}/ready`` and ``/v2/models/{task}/infer``, with
the same batching, version header and limits as the task APIs, JSON or the
binary tensor extension (what ``tritonclient.http`` sends by default), so that
Triton's and KServe's clients call these models unchanged.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

import numpy as np
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from models.inputs import InvalidInput
from services.batching import Overloaded
from services.metrics import zoo_metrics

if TYPE_CHECKING:
    from services.base import ZooService

DATATYPES = {"float32": "FP32", "float64": "FP64", "int64": "INT64", "int32": "INT32", "uint8": "UINT8", "bool": "BOOL"}
NUMPY = {v: k for k, v in DATATYPES.items()}
HEADER_LENGTH = "Inference-Header-Content-Length"
INSTANCES: list["ZooService"] = []
"""The service instance of this worker process (set when it starts)."""


class ProtocolError(InvalidInput):
    """A request that does not follow the protocol or the model's tensors (a 400 with the protocol's ``error`` body)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__("inference_protocol", message, status)


def _service() -> "ZooService":
    if not INSTANCES:
        raise ProtocolError("the service is still starting", status=503)
    return INSTANCES[-1]


def _error(message: str, status: int, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _tensors(spec_tensors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"name": t["name"], "datatype": DATATYPES.get(t["dtype"], t["dtype"].upper()), "shape": [-1 if isinstance(d, str) else int(d) for d in t["shape"]]}
        for t in spec_tensors
    ]


async def server_metadata(request: Request) -> JSONResponse:
    return JSONResponse({"name": "course-zoo", "version": "1", "extensions": ["binary_tensor_data"]})


async def live(request: Request) -> JSONResponse:
    return JSONResponse({"live": True})


async def ready(request: Request) -> JSONResponse:
    ok = bool(INSTANCES) and INSTANCES[-1].__is_ready__()
    return JSONResponse({"ready": ok}, status_code=200 if ok else 503)


def _runner(task: str) -> Any:
    service = _service()
    if task not in service.api_tasks():
        raise ProtocolError(f"no model {task!r}; models: {', '.join(service.api_tasks())}", status=404)
    runner = service.runners.get(task)
    if runner is None:
        raise ProtocolError(f"model {task!r} is not loaded: {service.problems.get(task) or service.problems.get('*', 'no champion')}", status=503)
    return runner


def _versioned(request: Request, runner: Any) -> None:
    wanted = request.path_params.get("version")
    if wanted is not None and wanted != runner.version:
        raise ProtocolError(f"model {runner.task!r} serves version {runner.version}, not {wanted}", status=404)


async def model_metadata(request: Request) -> Response:
    try:
        runner = _runner(request.path_params["task"])
        _versioned(request, runner)
    except ProtocolError as exc:
        return _error(str(exc), exc.status)
    spec = runner.model.spec
    body = {
        "name": runner.task,
        "versions": [runner.version],
        "platform": "onnxruntime_onnx",
        "inputs": _tensors(spec["inputs"]),
        "outputs": _tensors(spec["outputs"][:1]),  # the protocol serves the first output (classify's cam: POST /classify explain=true)
    }
    return JSONResponse(body, headers={"X-Model-Version": runner.version})


async def model_ready(request: Request) -> Response:
    try:
        runner = _runner(request.path_params["task"])
        _versioned(request, runner)
    except ProtocolError as exc:
        return _error(str(exc), exc.status)
    return JSONResponse({"name": runner.task, "ready": True}, headers={"X-Model-Version": runner.version})


def _read(body: bytes, header_length: str | None) -> tuple[dict[str, Any], bytes]:
    if header_length is None:
        head, rest = body, b""
    else:
        if not header_length.isdigit() or int(header_length) > len(body):
            raise ProtocolError(f"{HEADER_LENGTH} {header_length!r} does not fit a body of {len(body)} bytes")
        head, rest = body[: int(header_length)], body[int(header_length) :]
    try:
        payload = json.loads(head)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError(f"the request is not JSON: {exc}") from None
    except RecursionError:
        raise ProtocolError("the request's JSON is nested too deeply") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("inputs"), list):
        raise ProtocolError("the request needs an 'inputs' list")
    if "id" in payload and not isinstance(payload["id"], str):
        raise ProtocolError("the request's 'id' must be a string")
    _parameters(payload, "the request")
    outputs = payload.get("outputs")
    if outputs is not None and not (isinstance(outputs, list) and all(isinstance(o, dict) for o in outputs)):
        raise ProtocolError("'outputs' must be a list of objects, each with a name")
    for i, o in enumerate(outputs or []):
        _parameters(o, f"outputs[{i}]")
    for i, item in enumerate(payload["inputs"]):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise ProtocolError(f"inputs[{i}] must be an object with a name (a string), shape, datatype and data")
        _parameters(item, f"input {item['name']!r}")
    return payload, rest


def _parameters(obj: dict[str, Any], where: str) -> dict[str, Any]:
    """``obj``'s ``parameters``: an object, or none."""
    params = obj.get("parameters")
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise ProtocolError(f"{where}: 'parameters' must be an object")
    return params


def _array(item: Any, declared: dict[str, Any], binary: bytes, offset: int, max_rows: int) -> tuple[np.ndarray, int]:
    """One request input (an object, :func:`_read` checked) as the array the model takes, checked against its declared tensor."""
    name = declared["name"]
    dtype, datatype = np.dtype(declared["dtype"]), DATATYPES.get(declared["dtype"])
    if item.get("datatype") != datatype:
        raise ProtocolError(f"input {name!r} is {datatype}, not {item.get('datatype')!r}")
    shape = item.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise ProtocolError(f"input {name!r} needs a shape of non-negative integers")
    if len(shape) != len(declared["shape"]) or any(not isinstance(d, str) and d != s for d, s in zip(declared["shape"], shape)):
        want = [-1 if isinstance(d, str) else d for d in declared["shape"]]
        raise ProtocolError(f"input {name!r} has shape {shape}; the model takes {want} (-1: any size)")
    if not shape or shape[0] < 1 or shape[0] > max_rows:
        raise ProtocolError(f"input {name!r} has {shape[0] if shape else 0} rows; send 1 to {max_rows}", status=413 if shape and shape[0] > max_rows else 400)
    count = math.prod(shape)
    if count > 50_000_000:
        raise ProtocolError(f"input {name!r} has {count} values; the limit is 50,000,000", status=413)
    size = _parameters(item, f"input {name!r}").get("binary_data_size")
    if size is not None:
        if type(size) is not int or size != count * dtype.itemsize or offset + size > len(binary):
            raise ProtocolError(f"input {name!r}: binary_data_size {size!r} does not match {shape} {datatype} in the body")
        array = np.frombuffer(binary, dtype=dtype, count=count, offset=offset).reshape(shape).copy()
        if dtype.kind == "f" and not np.isfinite(array).all():
            raise ProtocolError(f"input {name!r} holds NaN or infinite values")
        return array, offset + size
    data = item.get("data")
    if not isinstance(data, list):
        raise ProtocolError(f"input {name!r} needs its values in 'data' (or as binary data)")
    try:
        values = np.asarray(data, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        raise ProtocolError(f"input {name!r}: data is not a (nested) list of {datatype} numbers") from None
    if values.size != count:
        raise ProtocolError(f"input {name!r}: {values.size} values for shape {shape}")
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        if not (np.isfinite(values).all() and (values == np.round(values)).all() and values.min(initial=0) >= info.min and values.max(initial=0) <= info.max):
            raise ProtocolError(f"input {name!r} is {datatype}: send whole numbers in its range")
        return np.asarray(data, dtype=dtype).reshape(shape), offset
    if dtype.kind == "f" and not np.isfinite(values).all():
        raise ProtocolError(f"input {name!r} holds NaN or infinite values")
    return values.astype(dtype).reshape(shape), offset


async def infer(request: Request) -> Response:
    task = request.path_params["task"]
    version: str | None = None
    try:
        runner = _runner(task)
        version = runner.version
        _versioned(request, runner)
        payload, binary = _read(await request.body(), request.headers.get(HEADER_LENGTH))  # read whole by the middleware
        spec = runner.model.spec
        given = {i["name"]: i for i in payload["inputs"]}
        names = [t["name"] for t in spec["inputs"]]
        if set(given) != set(names) or len(payload["inputs"]) != len(names):
            raise ProtocolError(f"the model takes inputs {names}; got {sorted(given)}")
        out_spec = spec["outputs"][0]
        for o in payload.get("outputs") or []:
            if o.get("name") not in (None, out_spec["name"]):
                raise ProtocolError(f"the model has no output {o.get('name')!r}; outputs: [{out_spec['name']!r}]")
        arrays, offset = [], 0
        max_rows = _service().config.max_infer_rows
        for declared in spec["inputs"]:
            array, offset = _array(given[declared["name"]], declared, binary, offset, max_rows)
            arrays.append(array)
        if len({len(a) for a in arrays}) != 1:
            raise ProtocolError("every input needs the same number of rows")
        runner.serving.check_tensors(dict(zip(names, arrays)))
        try:
            output = await runner.run(*arrays)
        except (RuntimeError, ValueError) as exc:  # ONNX Runtime's refusal of the tensors (Overloaded handled below)
            if isinstance(exc, Overloaded):
                raise
            raise ProtocolError(f"the model could not run these inputs: {str(exc).splitlines()[0][:300]}") from None
    except Overloaded as exc:
        zoo_metrics().overloads.labels(task, exc.reason).inc()
        return _error(f"{task} is overloaded: {exc}", 503, {"Retry-After": str(max(1, round(exc.retry_after))), "X-Model-Version": version or "none"})
    except InvalidInput as exc:
        zoo_metrics().rejections.labels(task, exc.reason).inc()
        return _error(str(exc), exc.status, {"X-Model-Version": version or "none"})
    zoo_metrics().predictions.labels(task, runner.version).inc(len(output))
    binary_out = bool(_parameters(payload, "the request").get("binary_data_output"))
    binary_out = binary_out or any(_parameters(o, "an output").get("binary_data") for o in payload.get("outputs") or [])
    output = np.ascontiguousarray(output.astype(np.dtype(out_spec["dtype"]), copy=False))
    tensor: dict[str, Any] = {"name": out_spec["name"], "datatype": DATATYPES[out_spec["dtype"]], "shape": list(output.shape)}
    body: dict[str, Any] = {"model_name": task, "model_version": runner.version, "outputs": [tensor]}
    if "id" in payload:
        body["id"] = payload["id"]
    headers = {"X-Model-Version": runner.version}
    if not binary_out:
        tensor["data"] = output.ravel().tolist()
        return JSONResponse(body, headers=headers)
    raw = output.tobytes()
    tensor["parameters"] = {"binary_data_size": len(raw)}
    head = json.dumps(body).encode()
    headers[HEADER_LENGTH] = str(len(head))
    return Response(head + raw, media_type="application/octet-stream", headers=headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    """No such route (404) or method (405, with ``Allow``): the protocol's JSON error, not Starlette's plain text."""
    if not isinstance(exc, HTTPException):
        raise exc
    return _error(exc.detail, exc.status_code, dict(exc.headers or {}))


def protocol_app() -> Starlette:
    """The ``/v2`` routes as one ASGI app; every course-zoo service's middleware sends ``/v2`` paths to it."""
    return Starlette(
        exception_handlers={HTTPException: _http_error},
        routes=[
            Route("/", server_metadata, methods=["GET"]),
            Route("/health/live", live, methods=["GET"]),
            Route("/health/ready", ready, methods=["GET"]),
            Route("/models/{task}", model_metadata, methods=["GET"]),
            Route("/models/{task}/ready", model_ready, methods=["GET"]),
            Route("/models/{task}/infer", infer, methods=["POST"]),
            Route("/models/{task}/versions/{version}", model_metadata, methods=["GET"]),
            Route("/models/{task}/versions/{version}/ready", model_ready, methods=["GET"]),
            Route("/models/{task}/versions/{version}/infer", infer, methods=["POST"]),
        ]
    )
