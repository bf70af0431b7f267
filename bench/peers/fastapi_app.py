"""The hand-written peer: a plain FastAPI app running each champion's PyTorch network eagerly.

What a user would write by hand: the same routes and request bodies as this
project's service, the task's own preprocessing, ``torch.inference_mode()``
and the network, one request at a time (each endpoint runs to completion on the
event loop; no batching, no ONNX). The networks are the registry champions'
(``bench.common.torch_model``: the registered run's checkpoint in the task's
``build``). Started by ``bench/http_level.py``::

    BENCH_TASKS=classify,recommend uvicorn bench.peers.fastapi_app:app --app-dir . --port 8000
"""

from __future__ import annotations

import base64
import io
from datetime import date
from typing import Any

import numpy as np
import pandas as pd
import torch
from fastapi import FastAPI, File, Form, UploadFile
from fastapi.responses import Response
from PIL import Image
from pydantic import BaseModel

from bench.common import champions, first_output, tasks_wanted, torch_model

NETS: dict[str, Any] = {}
SPECS: dict[str, dict[str, Any]] = {}
for _task, _champ in champions(tasks_wanted()).items():
    NETS[_task], _ = torch_model(_champ)
    SPECS[_task] = _champ.spec["preprocess"]

app = FastAPI(title="course-zoo bench: plain FastAPI + PyTorch eager")


def forward(task: str, *arrays: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return first_output(NETS[task](*(torch.from_numpy(a) for a in arrays))).float().numpy()


def open_image(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data)).convert("RGB")


@app.get("/ping")
def ping() -> dict[str, list[str]]:
    return {"tasks": sorted(NETS)}


@app.post("/classify")
async def classify(image: UploadFile = File(...), k: int = Form(5)) -> dict[str, Any]:
    from models.images import ImageSpec
    from models.tasks.classify.serving import top_k

    spec = SPECS["classify"]
    logits = forward("classify", ImageSpec.from_spec(spec).preprocess(open_image(await image.read()))[None])
    return {"predictions": [p.model_dump() for p in top_k(logits[0], spec["classes"], k)]}


class RateRequest(BaseModel):
    user_ids: list[int]
    movie_ids: list[int]


@app.post("/rate")
async def rate(req: RateRequest) -> dict[str, Any]:
    from models.tasks.recommend import IdMaps

    maps = IdMaps(SPECS["recommend"])
    users, movies = maps.encode(np.asarray(req.user_ids, dtype=np.int64), np.asarray(req.movie_ids, dtype=np.int64))
    scores = forward("recommend", users, movies)
    return {"ratings": [{"user_id": u, "movie_id": m, "rating": float(s)} for u, m, s in zip(req.user_ids, req.movie_ids, scores)]}


class SalesRecord(BaseModel):
    Store: int
    Date: str
    Open: int
    Promo: int
    StateHoliday: str
    SchoolHoliday: int
    DayOfWeek: int | None = None
    Id: int | None = None


class SalesRequest(BaseModel):
    records: list[SalesRecord]


@app.post("/sales")
async def sales(req: SalesRequest) -> dict[str, Any]:
    from models.tasks.sales.features import Preprocessor

    for r in req.records:
        date.fromisoformat(r.Date)
    frame = pd.DataFrame(
        {
            "Store": np.asarray([r.Store for r in req.records], dtype=np.int64),
            "Date": [r.Date for r in req.records],
            "Promo": np.asarray([r.Promo for r in req.records], dtype=np.int64),
            "StateHoliday": [r.StateHoliday for r in req.records],
            "SchoolHoliday": np.asarray([r.SchoolHoliday for r in req.records], dtype=np.int64),
        }
    )
    features = Preprocessor(SPECS["sales"]).transform(frame)
    log_sales = forward("sales", features.cats, features.conts)
    return {"predictions": [{"Store": r.Store, "Date": r.Date, "sales": float(np.exp(s)) if r.Open else 0.0} for r, s in zip(req.records, log_sales)]}


class SentimentRequest(BaseModel):
    texts: list[str]


@app.post("/sentiment")
async def sentiment(req: SentimentRequest) -> dict[str, Any]:
    from models.maths import softmax
    from models.text import Numericalizer, bucket_length, encode, pad_right

    spec = SPECS["sentiment"]
    num = Numericalizer(spec["vocab"])
    max_tokens = int(spec["max_tokens"])
    ids = [encode(t, num, max_tokens)[0] for t in req.texts]
    tokens, lengths = pad_right(ids, bucket_length(max(len(x) for x in ids), int(spec.get("bucket", 32)), max_tokens))
    probs = softmax(forward("sentiment", tokens, lengths).astype(np.float64))
    return {"predictions": [{"label": spec["labels"][int(p.argmax())], "probability": float(p.max())} for p in probs]}


@app.post("/segment")
async def segment(image: UploadFile = File(...)) -> dict[str, Any]:
    from models.images import ImageSpec
    from models.tasks.segment.masks import class_shares, png_bytes, predict_mask

    spec = SPECS["segment"]
    img = open_image(await image.read())
    logits = forward("segment", ImageSpec.from_spec(spec).preprocess(img)[None])
    mask = predict_mask(logits[0], img.size)
    return {
        "width": img.width,
        "height": img.height,
        "shares": class_shares(mask, list(spec["classes"])),
        "mask_png": base64.b64encode(png_bytes(mask)).decode(),
    }


@app.post("/superres")
async def superres(image: UploadFile = File(...)) -> Response:
    from models.tasks.superres.quality import to_array, to_uint8

    x = to_array(open_image(await image.read()))
    out = to_uint8(forward("superres", x[None])[0])
    buf = io.BytesIO()
    Image.fromarray(out).save(buf, format="PNG", compress_level=3)
    return Response(buf.getvalue(), media_type="image/png")
