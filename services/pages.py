"""The service's own pages: the OpenAPI page at ``/`` and the playground at ``/ui``, both served from the package.

BentoML's index page loads Google Tag Manager and its document describes BentoML;
these pages describe course-zoo, which tasks this server answers and with which
model versions, and fetch nothing from the internet.
"""

from __future__ import annotations

from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from services.base import LOADED_VERSIONS

ASSETS = Path(__file__).with_name("assets")
PAGES = frozenset({"/", "/ui", "/ui/", "/ui/tasks.json"})
"""The paths this module answers (GET and HEAD)."""
SUMMARY = {
    "classify": "an image in, the most probable classes out; with explain=true, the heatmap of where the model looked (lessons 1, 6)",
    "segment": "a street photo in, a class per pixel out, with an overlay (lesson 3, CamVid)",
    "sentiment": "movie reviews in, positive or negative out (lesson 4, ULMFiT on IMDb)",
    "sales": "store-days in, a sales forecast out (lesson 4, entity embeddings on Rossmann)",
    "recommend": "a user in, the movies they would rate highest out; or ratings of user-movie pairs (lesson 4, MovieLens)",
    "superres": "an image in, the same image at twice the size out (lesson 7)",
}


@cache
def asset(name: str) -> bytes:
    return (ASSETS / name).read_bytes()


def project_version() -> str:
    try:
        return metadata.version("course-zoo")
    except metadata.PackageNotFoundError:
        return "unknown"


def served(routes: dict[str, str], tasks: list[str] | tuple[str, ...]) -> list[dict[str, Any]]:
    """Each task this service has an API for: its routes, and the model version this worker serves (``None``: not served)."""
    return [
        {"task": task, "model_version": LOADED_VERSIONS.get(task), "routes": sorted(r for r, t in routes.items() if t == task), "summary": SUMMARY.get(task, "")}
        for task in sorted(tasks)
    ]


def describe(routes: dict[str, str], tasks: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """The OpenAPI document's ``info``: this project, its tasks and model versions, where the playground is."""
    lines = [
        "course-zoo serves the models of fast.ai's *Practical Deep Learning for Coders*, trained, registered and promoted by "
        "the platform (or imported from fastai), as ONNX models with their JSON specs.",
        "",
        "Try them in the [playground](./ui). Every answer names the model version that produced it (`X-Model-Version`); "
        "bad input gets a 4xx with a JSON `error` message. Also here: Prometheus metrics at [/metrics](./metrics), "
        "the Open Inference Protocol at [/v2](./v2), health at `/livez` and `/readyz`.",
        "",
        "| task | routes | model version | what it does |",
        "| --- | --- | --- | --- |",
    ]
    for t in served(routes, tasks):
        version = t["model_version"] or "not served (503)"
        lines.append(f"| {t['task']} | {', '.join(f'`{r}`' for r in t['routes'])} | {version} | {t['summary']} |")
    return {"title": "course-zoo", "version": project_version(), "description": "\n".join(lines)}


def page(path: str, routes: dict[str, str], tasks: list[str] | tuple[str, ...]) -> Response:
    """The answer for one of :data:`PAGES`."""
    if path == "/":
        return HTMLResponse(asset("index.html"))
    if path == "/ui":
        return RedirectResponse("./ui/", status_code=307)
    if path == "/ui/":
        return HTMLResponse(asset("playground.html"), headers={"Cache-Control": "no-cache"})
    body = {"service": "course-zoo", "version": project_version(), "tasks": served(routes, tasks)}
    return JSONResponse(body, headers={"Cache-Control": "no-store"})
