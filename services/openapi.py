"""The service's OpenAPI document, amended with what the platform adds to BentoML's routes.

BentoML declares 200, 400, 404 and 500 for each API. The task routes also
answer 413 (over a size cap), 503 with ``Retry-After`` (no model loaded, or its
queue is full) and, with ``ZOO_API_TOKENS``, 401; those are declared here, with
the platform's error body, so that clients and fuzzers generated from the
document know them; so are the Open Inference Protocol's ``/v2`` routes.
"""

from __future__ import annotations

import json
from typing import Any

ERROR = {
    "type": "object",
    "title": "ZooError",
    "required": ["error"],
    "properties": {
        "error": {"type": "string", "title": "Message"},
        "reason": {"type": "string", "title": "Reason", "description": "a machine-readable kind of refusal, also sent as X-Zoo-Rejection"},
        "detail": {"type": "string", "title": "Error Detail"},
    },
}


RETRY = {"Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "integer"}}}


def json_response(description: str, headers: dict[str, Any] | None = None, schema: str = "ZooError") -> dict[str, Any]:
    """An OpenAPI response: a JSON body of ``components/schemas/<schema>``, and ``headers``."""
    out: dict[str, Any] = {"description": description, "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}}
    if headers:
        out["headers"] = headers
    return out


def amend(document: bytes, routes: set[str], tokens: bool, info: dict[str, Any] | None = None, protocol_tasks: list[str] | None = None) -> bytes:
    """BentoML's ``/docs.json`` with the task routes' other answers declared, and ``info`` (this project's) in place of BentoML's.

    ``protocol_tasks``: the Open Inference Protocol's routes for these tasks are added (:mod:`services.protocol_schema`).
    """
    spec = json.loads(document)
    if info is not None:
        spec["info"] = info
    spec.setdefault("components", {}).setdefault("schemas", {})["ZooError"] = ERROR
    if protocol_tasks:
        from services.protocol_schema import SCHEMAS, protocol_paths

        spec["components"]["schemas"].update(SCHEMAS)
        spec.setdefault("paths", {}).update(protocol_paths(protocol_tasks, tokens))
    for route in routes:
        for operation in spec.get("paths", {}).get(route, {}).values():
            responses = operation.setdefault("responses", {})
            responses.setdefault("413", json_response("Content Too Large: the body, an image's pixels or a list over its cap"))
            responses.setdefault("503", json_response("Service Unavailable: no model loaded, or its queue is full", RETRY))
            if tokens:
                responses.setdefault("401", json_response("Unauthorized: no valid bearer token"))
                operation["security"] = [{"bearer": []}]
    if tokens:
        spec["components"].setdefault("securitySchemes", {})["bearer"] = {"type": "http", "scheme": "bearer"}
    return json.dumps(spec).encode()
