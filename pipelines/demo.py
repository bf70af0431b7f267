"""``zoo demo``: the whole path once, with the time each step took."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from models.registry import task_names
from models.serving import Limits
from models.settings import Settings
from pipelines import ingest, promotion
from pipelines.serving import running_server

Query = Callable[[Any, Path, str], list[tuple[str, dict[str, Any], Any]]]


def _classify(client: Any, data: Path, task: str) -> list[tuple[str, dict[str, Any], Any]]:
    calls = []
    for label in ("3", "7"):
        image = sorted((data / "mnist_tiny" / "valid" / label).glob("*.png"))[0]
        args = {"image": image, "k": 2}
        calls.append(("classify", {**args, "image": f"{image.parent.name}/{image.name}"}, client.classify(**args)))
    return calls


def _recommend(client: Any, data: Path, task: str) -> list[tuple[str, dict[str, Any], Any]]:
    import pandas as pd

    ratings = pd.read_csv(data / "movie_lens_sample" / "ratings.csv")
    user = int(ratings["userId"].iloc[0])
    movies = [int(m) for m in ratings["movieId"].iloc[:3]]
    calls = [
        ("recommend", {"user_id": user, "k": 5}, client.recommend(user_id=user, k=5)),
        ("recommend", {"user_id": 999999, "k": 3}, client.recommend(user_id=999999, k=3)),
        ("rate", {"user_ids": [user] * 3, "movie_ids": movies}, client.rate(user_ids=[user] * 3, movie_ids=movies)),
    ]
    actual = ratings["rating"].iloc[:3].tolist()
    calls[-1][2]["actual"] = actual
    return calls


def _sales(client: Any, data: Path, task: str) -> list[tuple[str, dict[str, Any], Any]]:
    import pandas as pd

    train = pd.read_csv(data / "rossmann_sample" / "train.csv", dtype={"StateHoliday": str})
    last = train["Date"].max()  # the newest day and store 1's latest promo day: both in the validation weeks
    promo = train[(train["Store"] == 1) & (train["Promo"] == 1) & (train["Open"] == 1)]["Date"].max()
    rows = train[((train["Date"] == last) & (train["Store"] <= 3)) | ((train["Date"] == promo) & (train["Store"] == 1))]
    fields = ["Store", "Date", "Open", "Promo", "StateHoliday", "SchoolHoliday"]
    records = [{k: (v if k in ("Date", "StateHoliday") else int(v)) for k, v in row.items()} for row in rows[fields].to_dict("records")]
    records.append({**records[0], "Store": 99999})  # an unknown store: served as an average store, counted in /metrics
    answer = client.sales(records=records)
    answer["actual"] = [int(v) for v in rows["Sales"]] + [None]
    return [("sales", {"records": records}, answer)]


def _demo_dir() -> Path:
    folder = Settings.from_env().home / "demo"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _segment(client: Any, data: Path, task: str) -> list[tuple[str, dict[str, Any], Any]]:
    import base64

    images = sorted((data / "camvid_tiny" / "images").iterdir())[:2]
    calls = []
    for image in images:
        answer = client.segment(image=image, overlay=True)
        out = _demo_dir()
        for key, suffix in (("mask_png", "mask"), ("overlay_png", "overlay")):
            if answer.get(key):
                png = base64.b64decode(answer[key])
                (out / f"segment-{image.stem}-{suffix}.png").write_bytes(png)
                answer[key] = f"<{len(png)} bytes of PNG, saved as {out / f'segment-{image.stem}-{suffix}.png'}>"
        answer["shares"] = answer["shares"][:5]  # the five largest classes
        answer.pop("classes", None)
        calls.append(("segment", {"image": image.name, "overlay": True}, answer))
    return calls


def _superres(client: Any, data: Path, task: str) -> list[tuple[str, dict[str, Any], Any]]:
    from PIL import Image

    photo = sorted((data / "camvid_tiny" / "images").iterdir())[0]
    small = _demo_dir() / f"superres-{photo.stem}-input.png"
    with Image.open(photo) as img:
        low = img.convert("RGB").resize((img.width // 2, img.height // 2), Image.Resampling.BILINEAR)
    low.save(small)
    upscaled = client.superres(image=small)
    dest = _demo_dir() / f"superres-{photo.stem}-2x.png"
    upscaled.save(dest)
    answer = {"input_size": list(low.size), "output_size": list(upscaled.size), "saved": str(dest), "png_bytes": dest.stat().st_size}
    return [("superres", {"image": small.name}, answer)]


def _sentiment(client: Any, data: Path, task: str) -> list[tuple[str, dict[str, Any], Any]]:
    positive = "One of the best films I have seen this year. The acting is superb and the story moved me to tears. I loved it!"
    negative = "What a waste of two hours. The plot is dull, the dialogue is awful and I was bored from start to finish."
    long = " ".join([negative] * 60 + [positive])  # longer than the model reads: only its end is kept
    texts = [positive, negative, long]
    answer = client.sentiment(texts=texts)
    shown = [positive, negative, f"<{len(long)} characters: the negative review 60 times, then the positive one>"]
    return [("sentiment", {"texts": shown}, answer)]


def _examples(client: Any, data: Path, task: str) -> list[tuple[str, dict[str, Any], Any]]:
    """A task without its own demo queries: each endpoint on its serving hooks' example request."""
    from models.registry import get_serving
    from models.store.reading import load_alias

    model = load_alias(Settings.from_env(), task)
    hooks = get_serving(task)(model.spec["preprocess"], Limits())
    calls = []
    for endpoint, request in hooks.examples(_demo_dir()).items():
        answer = getattr(client, endpoint)(**request)
        calls.append((endpoint, {k: str(v) for k, v in request.items()}, answer if isinstance(answer, dict) else str(type(answer))))
    return calls


QUERIES: dict[str, Query] = {"classify": _classify, "recommend": _recommend, "segment": _segment, "superres": _superres, "sales": _sales, "sentiment": _sentiment}


def run_demo(settings: Settings, config: str, console: Console) -> None:
    """Ingest, train each task, promote, serve on loopback, call every API."""
    from bentoml import SyncHTTPClient

    from pipelines.flows import retrain

    timings: list[tuple[str, float]] = []

    @contextmanager
    def step(name: str) -> Iterator[None]:
        console.rule(f"[bold]{name}")
        start = time.perf_counter()
        yield
        timings.append((name, time.perf_counter() - start))
        console.print(f"[dim]{name}: {timings[-1][1]:.1f} s[/]")

    with step("ingest data (DVC)"):
        digest = ingest.ingest(settings)
        console.print(f"data.dvc md5 {digest}")
    results = []
    for task in task_names():
        with step(f"train {task} ({config})"):
            results.append(retrain(task, config))
            r = results[-1]
            if r.skipped:
                console.print(f"{task}: {r.message}")
            else:
                console.print(f"{task} v{r.version}: {r.metric_name} {r.metric:.4f}, baseline {r.baseline:.4f}")
        with step(f"promote {task}"):
            record, gates = promotion.promote(settings, task, results[-1].version, reason="make demo", force=False)
            console.print(", ".join(f"{g.name} {'ok' if g.passed else 'FAIL'}" for g in gates) + f"; champion v{record.version}")
    log = settings.home / "logs" / "demo-serve.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with step("serve and query"):
        with running_server(settings, log=log) as url:
            with SyncHTTPClient(url, server_ready_timeout=180) as client:
                console.print(f"server ready at {url} (log: {log})")
                for task in task_names():
                    query = QUERIES.get(task, _examples)
                    for api, args, answer in query(client, settings.project_root / ingest.DATA_DIR, task):
                        console.print(f"[bold cyan]{api}[/]({json.dumps(args)}) ->")
                        console.print_json(json.dumps(answer))
    table = Table("step", "seconds", title="demo timings")
    for name, seconds in timings:
        table.add_row(name, f"{seconds:.1f}")
    table.add_row("[bold]total", f"[bold]{sum(s for _, s in timings):.1f}")
    console.print(table)
