"""The Open Inference Protocol's routes (``/v2``, :mod:`services.inference_protocol`) in the OpenAPI document.

BentoML's document lists only its own APIs; the ``/v2`` routes are a mounted
ASGI app. Declaring them here, with the protocol's request and response bodies
(KServe's REST spec, plus the binary tensor extension), lets clients and
fuzzers generated from ``/docs.json`` reach them like the task APIs.
"""

from __future__ import annotations

from typing import Any

from services.openapi import RETRY, json_response

DATATYPES = ["BOOL", "UINT8", "INT32", "INT64", "FP32", "FP64"]
PARAMETERS = {"type": "object", "title": "Parameters", "additionalProperties": True}
SHAPE = {"type": "array", "items": {"type": "integer"}, "title": "Shape", "description": "sizes; -1 in metadata: any size"}
TENSOR_META = {
    "type": "object",
    "required": ["name", "datatype", "shape"],
    "properties": {"name": {"type": "string"}, "datatype": {"type": "string"}, "shape": SHAPE},
}
SCHEMAS: dict[str, Any] = {
    "ProtocolError": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
    "ServerMetadata": {
        "type": "object",
        "required": ["name", "version", "extensions"],
        "properties": {"name": {"type": "string"}, "version": {"type": "string"}, "extensions": {"type": "array", "items": {"type": "string"}}},
    },
    "ModelMetadata": {
        "type": "object",
        "required": ["name", "versions", "platform", "inputs", "outputs"],
        "properties": {
            "name": {"type": "string"},
            "versions": {"type": "array", "items": {"type": "string"}},
            "platform": {"type": "string"},
            "inputs": {"type": "array", "items": TENSOR_META},
            "outputs": {"type": "array", "items": TENSOR_META},
        },
    },
    "InferRequest": {
        "type": "object",
        "required": ["inputs"],
        "properties": {
            "id": {"type": "string"},
            "parameters": {**PARAMETERS, "properties": {"binary_data_output": {"type": "boolean"}}},
            "inputs": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "required": ["name", "shape", "datatype"],
                    "properties": {
                        "name": {"type": "string"},
                        "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
                        "datatype": {"type": "string", "enum": DATATYPES},
                        "parameters": {**PARAMETERS, "properties": {"binary_data_size": {"type": "integer", "minimum": 0}}},
                        "data": {"type": "array", "description": "the values, flat or nested, row-major"},
                    },
                },
            },
            "outputs": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {"name": {"type": "string"}, "parameters": {**PARAMETERS, "properties": {"binary_data": {"type": "boolean"}}}},
                },
            },
        },
    },
    "InferResponse": {
        "type": "object",
        "required": ["model_name", "model_version", "outputs"],
        "properties": {
            "model_name": {"type": "string"},
            "model_version": {"type": "string"},
            "id": {"type": "string"},
            "outputs": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name", "datatype", "shape"],
                    "properties": {"name": {"type": "string"}, "datatype": {"type": "string"}, "shape": SHAPE, "data": {"type": "array"}, "parameters": PARAMETERS},
                },
            },
        },
    },
}
def _flag(name: str) -> dict[str, Any]:
    return {"type": "object", "required": [name], "properties": {name: {"type": "boolean"}}}


def _inline(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def protocol_paths(tasks: list[str], tokens: bool) -> dict[str, Any]:
    """The ``/v2`` operations for the served ``tasks``; with ``tokens``, the model routes need a bearer token."""
    task = {"name": "task", "in": "path", "required": True, "schema": {"type": "string", "enum": tasks}, "description": "the task's model"}
    version = {"name": "version", "in": "path", "required": True, "schema": {"type": "string"}, "description": "the version served"}
    missing = json_response("Not Found: no such model, or not the version served", schema="ProtocolError")
    unloaded = json_response("Service Unavailable: the model is not loaded", schema="ProtocolError")

    def guarded(op: dict[str, Any]) -> dict[str, Any]:
        if tokens:
            op["responses"]["401"] = json_response("Unauthorized: no valid bearer token")
            op["security"] = [{"bearer": []}]
        return op

    def metadata(params: list[dict[str, Any]]) -> dict[str, Any]:
        responses = {"200": json_response("The model's tensors, from its spec", schema="ModelMetadata"), "404": missing, "503": unloaded}
        return {"get": guarded({"tags": ["Inference protocol"], "summary": "Model metadata", "parameters": params, "responses": responses})}

    def model_ready(params: list[dict[str, Any]]) -> dict[str, Any]:
        ready = {"type": "object", "required": ["name", "ready"], "properties": {"name": {"type": "string"}, "ready": {"type": "boolean"}}}
        responses = {"200": _inline(ready, "The model is loaded"), "404": missing, "503": unloaded}
        return {"get": guarded({"tags": ["Inference protocol"], "summary": "Model readiness", "parameters": params, "responses": responses})}

    def infer(params: list[dict[str, Any]]) -> dict[str, Any]:
        body = {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/InferRequest"}},
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}, "description": "the binary tensor extension"},
            },
        }
        answer = json_response("The first output of the model, as JSON or (binary_data_output) JSON then raw bytes", schema="InferResponse")
        answer["content"]["application/octet-stream"] = {"schema": {"type": "string", "format": "binary"}}
        responses = {
            "200": answer,
            "400": json_response("Bad Request: not the protocol, or not the model's tensors", schema="ProtocolError"),
            "404": missing,
            "413": json_response("Content Too Large: the body, or a tensor over its cap"),
            "503": json_response("Service Unavailable: the model is not loaded, or its queue is full", RETRY, schema="ProtocolError"),
        }
        op = {"tags": ["Inference protocol"], "summary": "Run the model on tensors", "parameters": params, "requestBody": body, "responses": responses}
        return {"post": guarded(op)}

    health = {"tags": ["Inference protocol"]}
    return {
        "/v2": {"get": {**health, "summary": "Server metadata", "responses": {"200": json_response("The server and its extensions", schema="ServerMetadata")}}},
        "/v2/health/live": {"get": {**health, "summary": "Liveness", "responses": {"200": _inline(_flag("live"), "The server is live")}}},
        "/v2/health/ready": {
            "get": {
                **health,
                "summary": "Readiness",
                "responses": {"200": _inline(_flag("ready"), "Every model is loaded"), "503": _inline(_flag("ready"), "Not ready")},
            }
        },
        "/v2/models/{task}": metadata([task]),
        "/v2/models/{task}/ready": model_ready([task]),
        "/v2/models/{task}/infer": infer([task]),
        "/v2/models/{task}/versions/{version}": metadata([task, version]),
        "/v2/models/{task}/versions/{version}/ready": model_ready([task, version]),
        "/v2/models/{task}/versions/{version}/infer": infer([task, version]),
    }
