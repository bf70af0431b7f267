"""HTTP level: this project's BentoML service vs ``mlflow models serve`` vs a plain FastAPI app.

One server at a time on this machine, each loaded with the registry champions:

- ``bentoml``: ``bentoml serve services.zoo:Zoo`` (the one Bento, every route), as ``zoo serve`` starts it;
- ``mlflow``: ``mlflow models serve -m models:/<task>@champion --env-manager local`` (the
  registered MLflow ONNX model's own pyfunc flavour; one server per task). Its
  ``/invocations`` takes model tensors, so its client sends what this project's
  preprocessing makes of the same input (``{"inputs": {name: tensor}}``) and gets raw
  model outputs back: the preprocessing and postprocessing are not in its time;
- ``fastapi``: ``bench/peers/fastapi_app.py``, PyTorch eager, one request at a time.

The peers run as many worker processes as the Bento (``-w`` / ``--workers``; the Bento's
default is one per CPU, see ``services.options.serving_workers``), so that all three split
the same CPUs the same way; ``BENCH_PEER_WORKERS`` sets another number.

Load: ``wrk`` (one thread, ``-c`` 1, 8, 32; ``bench/wrk/post.lua``) posting the same prepared
body on every request, one input per request. Each run starts once the server is idle
(``Server.settle``: the last run's backlog answered). Each round starts each server once,
in an order that rotates between rounds, and runs every API at every concurrency;
figures are medians over rounds, errors are summed. wrk runs on the same cores as
the server (as any load generator on this machine would).

"The limit" for the compute-bound APIs (images, text) is measured here too, in the
same run: ONNX Runtime on the exact tensors one request becomes, at batch 1 and 32,
in this process with no server running; the best is the API's ceiling in requests/s.

    python bench/http_level.py           # writes bench/results/http_level.{json,md}
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    RESULTS,
    ROOT,
    Champion,
    champions,
    env_float,
    env_int,
    env_list,
    fmt,
    settings,
    spread,
    stamp,
    stamp_markdown,
    tasks_wanted,
    wait_http,
    write_results,
)
from pipelines.serving import free_port  # noqa: E402

LUA = ROOT / "bench" / "wrk" / "post.lua"
SERVERS = ("bentoml", "mlflow", "fastapi")
COMPUTE_BOUND = ("classify", "segment", "sentiment", "superres")
SAMPLE_TEXT = (
    "This movie was a pleasant surprise. The acting is solid, the story moves along, and the ending "
    "actually made me smile. Not a masterpiece, but I would happily watch it again with friends."
)


@dataclass
class Api:
    name: str
    task: str
    route: str
    body: bytes
    ctype: str
    mlflow_body: bytes
    tensors: list[np.ndarray]
    """What one request becomes: the model's inputs (the MLflow body, the limit's input)."""
    per_request: int = 1
    """Model rows per request (superres: tiles)."""
    row_tensors: list[np.ndarray] | None = None
    """One model row, when a request is several (superres: one tile)."""


# ---------------------------------------------------------------------------------------------------- inputs


def _multipart(field: str, filename: str, data: bytes, ctype: str) -> tuple[bytes, str]:
    boundary = "benchboundary7d4a1c"
    body = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{filename}\"\r\n"
        f"Content-Type: {ctype}\r\n\r\n"
    ).encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def _png(img: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _first_image(folder: Path, pattern: str) -> Path | None:
    found = sorted(folder.glob(pattern)) if folder.is_dir() else []
    return found[0] if found else None


def _image(data_dir: Path, pattern: str, size: tuple[int, int], seed: int) -> Any:
    """The first matching image of the task's sample data, else a seeded synthetic one of ``size`` (w, h)."""
    from PIL import Image

    path = _first_image(data_dir, pattern)
    if path is not None:
        return Image.open(path).convert("RGB")
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8))


def _mlflow_json(names: list[str], tensors: list[np.ndarray]) -> bytes:
    return json.dumps({"inputs": {n: t.tolist() for n, t in zip(names, tensors)}}).encode()


def _signature_shape(task: str, index: int) -> tuple[int, ...]:
    """The shape the registered MLflow signature fixes for input ``index`` (-1: any)."""
    import mlflow

    from models.store import names

    info = mlflow.models.get_model_info(f"models:/{names.model_name(task)}@champion")
    if info.signature is None:
        return (-1, -1, -1, -1)
    return tuple(int(d) for d in info.signature.inputs.inputs[index].shape)


def _signature_crops(task: str, image: np.ndarray) -> np.ndarray:
    """``image`` (CHW) as MLflow's server will take it: one batch of crops of the signature's fixed size.

    The registered signature fixes height and width to the registration example's
    (``mlflow models serve`` rejects any other shape), so a client must cut the image
    into crops of that size itself: here the fewest that cover it, edge crops moved inside.
    """
    import mlflow

    from models.store import names

    info = mlflow.models.get_model_info(f"models:/{names.model_name(task)}@champion")
    shape = info.signature.inputs.inputs[0].shape if info.signature is not None else (-1, 3, -1, -1)
    h, w = int(shape[2]), int(shape[3])
    H, W = image.shape[1:]
    if h <= 0 or w <= 0 or (h, w) == (H, W) or h > H or w > W:
        return image[None]
    tops = sorted({min(t, H - h) for t in range(0, H, h)})
    lefts = sorted({min(left, W - w) for left in range(0, W, w)})
    return np.stack([image[:, t : t + h, left : left + w] for t in tops for left in lefts])


def build_apis(champs: dict[str, Champion]) -> list[Api]:
    """One request per API: the raw body (BentoML and FastAPI) and the tensors it becomes (MLflow)."""
    import pandas as pd

    data = settings().project_root / "data"
    apis: list[Api] = []
    for task, ch in champs.items():
        spec = ch.spec["preprocess"]
        names = [t["name"] for t in ch.spec["inputs"]]
        if task == "classify":
            from models.images import ImageSpec

            img = _image(data / "mnist_tiny" / "valid", "*/*.png", (28, 28), 0)
            body, ctype = _multipart("image", "digit.png", _png(img), "image/png")
            x = [ImageSpec.from_spec(spec).preprocess(img)[None]]
            apis.append(Api("classify", task, "/classify", body, ctype, _mlflow_json(names, x), x))
        elif task == "recommend":
            from models.tasks.recommend import IdMaps

            user, movie = int(spec["users"][0]), int(spec["movies"][0])
            body = json.dumps({"user_ids": [user], "movie_ids": [movie]}).encode()
            x = list(IdMaps(spec).encode(np.asarray([user], dtype=np.int64), np.asarray([movie], dtype=np.int64)))
            apis.append(Api("rate", task, "/rate", body, "application/json", _mlflow_json(names, x), x))
        elif task == "sales":
            from models.tasks.sales.features import Preprocessor

            store = sorted(spec["stores"], key=int)[0]
            day = spec.get("data_end", "2015-07-31")
            record = {"Store": int(store), "Date": day, "Open": 1, "Promo": 1, "StateHoliday": "0", "SchoolHoliday": 0}
            body = json.dumps({"records": [record]}).encode()
            frame = pd.DataFrame(
                {"Store": np.asarray([int(store)], dtype=np.int64), "Date": [day], "Promo": np.asarray([1], dtype=np.int64),
                 "StateHoliday": ["0"], "SchoolHoliday": np.asarray([0], dtype=np.int64)}
            )
            f = Preprocessor(spec).transform(frame)
            x = [f.cats, f.conts]
            apis.append(Api("sales", task, "/sales", body, "application/json", _mlflow_json(names, x), x))
        elif task == "sentiment":
            from models.text import Numericalizer, bucket_length, encode, pad_right

            text = SAMPLE_TEXT
            csv = data / "imdb_sample" / "texts.csv"
            if csv.is_file():
                frame = pd.read_csv(csv)
                col = "text" if "text" in frame.columns else frame.columns[-1]
                text = str(frame[col].iloc[0])
            body = json.dumps({"texts": [text]}).encode()
            max_tokens = int(spec["max_tokens"])
            ids = [encode(text, Numericalizer(spec["vocab"]), max_tokens)[0]]
            tokens, lengths = pad_right(ids, bucket_length(len(ids[0]), int(spec.get("bucket", 32)), max_tokens))
            x = [tokens, lengths]
            sig_len = _signature_shape(task, 0)[1]
            m = x
            if sig_len > 0 and sig_len != tokens.shape[1]:  # MLflow enforces the registration example's length
                m = list(pad_right(ids, sig_len))
            apis.append(Api("sentiment", task, "/sentiment", body, "application/json", _mlflow_json(names, m), x))
        elif task == "segment":
            from models.images import ImageSpec

            h, w = spec["image_size"]
            img = _image(data / "camvid_tiny" / "images", "*.png", (w, h), 1)
            body, ctype = _multipart("image", "street.png", _png(img), "image/png")
            x = [ImageSpec.from_spec(spec).preprocess(img)[None]]
            apis.append(Api("segment", task, "/segment", body, ctype, _mlflow_json(names, x), x))
        elif task == "superres":
            from models.tasks.superres.quality import to_array
            from models.tiling import TilePlan

            img = _image(data / "camvid_tiny" / "images", "*.png", (128, 96), 2)
            body, ctype = _multipart("image", "photo.png", _png(img), "image/png")
            whole = to_array(img)
            plan = TilePlan(whole.shape[1], whole.shape[2], int(spec["tile"]), int(spec["margin"]), int(spec["scale"]))
            tiles = list(plan.tiles())
            tile = np.ascontiguousarray(plan.cut(whole, tiles[0]))[None]
            x = [_signature_crops(task, whole)]
            apis.append(Api("superres", task, "/superres", body, ctype, _mlflow_json(names, x), x, per_request=len(tiles), row_tensors=[tile]))
    return apis


# ---------------------------------------------------------------------------------------------------- the limit


def limit(ch: Champion, api: Api, rounds: int, min_seconds: float) -> dict[str, Any]:
    """ONNX Runtime's requests/s ceiling for ``api``: the request's rows at batch 1 and 32, best batch."""
    from bench.model_level import interleaved

    sess = ch.model.session
    names = [i.name for i in sess.get_inputs()]
    row = api.row_tensors or api.tensors
    feeds = {b: dict(zip(names, [np.ascontiguousarray(np.repeat(t, b, axis=0)) for t in row])) for b in (1, 32)}
    samples = interleaved({b: (lambda f=f: sess.run(None, f)) for b, f in feeds.items()}, rounds, min_seconds)
    per_batch = {str(b): spread([b / s / api.per_request for s in xs]) for b, xs in samples.items()}
    best = max(per_batch, key=lambda b: per_batch[b]["median"])
    return {"requests_per_s": per_batch, "best_batch": int(best), "best_requests_per_s": per_batch[best]["median"], "rows_per_request": api.per_request}


# ---------------------------------------------------------------------------------------------------- servers


class Server:
    """One server process group; ``url`` once ready; stopped (whole group) on exit."""

    def __init__(self, kind: str, cmd: list[str], env: dict[str, str], ready_path: str, log: Path, timeout: float = 180) -> None:
        self.kind, self.cmd, self.env, self.ready_path, self.log, self.timeout = kind, cmd, env, ready_path, log, timeout
        self.port = free_port()

    def __enter__(self) -> "Server":
        cmd = [c.replace("{port}", str(self.port)) for c in self.cmd]
        self._out = self.log.open("ab")
        self.proc = subprocess.Popen(cmd, env=self.env, cwd=ROOT, stdout=self._out, stderr=subprocess.STDOUT, start_new_session=True)
        self.url = f"http://127.0.0.1:{self.port}"
        t0 = time.monotonic()
        try:
            wait_http(self.url + self.ready_path, self.timeout, self.proc)
        except Exception:
            self.__exit__()
            raise RuntimeError(f"{self.kind} did not start; see {self.log}") from None
        self.start_s = time.monotonic() - t0
        return self

    def settle(self, timeout: float = 180, window: float = 0.5, busy: float = 0.05) -> float:
        """Wait until the server's processes are idle, and return the seconds waited.

        When wrk stops, a server that fell behind still holds the requests it had read (the
        FastAPI app runs one at a time, 32 queued segment requests are tens of seconds); timed
        from the next run they made a peer look dead (0 requests/s at c1). Idle: the process
        group used under ``busy`` of one CPU over ``window`` seconds.
        """
        import psutil

        def cpu_seconds() -> float:
            root = psutil.Process(self.proc.pid)
            total = 0.0
            for proc in (root, *root.children(recursive=True)):
                try:
                    times = proc.cpu_times()
                except psutil.Error:
                    continue
                total += times.user + times.system
            return total

        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            before = cpu_seconds()
            time.sleep(window)
            if cpu_seconds() - before < busy * window:
                break
        return time.monotonic() - t0

    def __exit__(self, *exc: Any) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=30)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self._out.close()


def base_env() -> dict[str, str]:
    """This environment with ZOO_HOME's tools, and this venv's ``bin`` first on PATH
    (``mlflow models serve`` execs ``uvicorn`` by name)."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return {**os.environ, **settings().tool_env(), "PATH": path}


def bento_workers() -> int:
    """The Bento's worker processes: its own default for the all-tasks service, or ``ZOO_WORKERS`` from ``BENCH_BENTO_ENV``."""
    from services.options import serving, serving_workers

    extra = dict(kv.split("=", 1) for kv in env_list("BENCH_BENTO_ENV", ()))
    return int(extra["ZOO_WORKERS"]) if extra.get("ZOO_WORKERS") else serving_workers(serving())


def peer_workers() -> int:
    """The peers run as many worker processes as the Bento (a fair split of the same CPUs), unless ``BENCH_PEER_WORKERS``."""
    return env_int("BENCH_PEER_WORKERS", 0) or bento_workers()


def bento_server(tasks: list[str], log: Path) -> Server:
    from pipelines.serving import serve_command

    cmd = serve_command(None, 0, host="127.0.0.1")
    cmd[cmd.index("--port") + 1] = "{port}"
    extra = dict(kv.split("=", 1) for kv in env_list("BENCH_BENTO_ENV", ()))
    return Server("bentoml", cmd, {**base_env(), "ZOO_TASKS": ",".join(tasks), **extra}, "/readyz", log)


def mlflow_server(task: str, log: Path) -> Server:
    from models.store import names

    mlflow = str(Path(sys.executable).with_name("mlflow"))
    uri = f"models:/{names.model_name(task)}@champion"
    cmd = [mlflow, "models", "serve", "-m", uri, "-h", "127.0.0.1", "-p", "{port}", "--env-manager", "local", "-w", str(peer_workers())]
    return Server("mlflow", cmd, base_env(), "/ping", log)


def fastapi_server(tasks: list[str], log: Path) -> Server:
    uvicorn = str(Path(sys.executable).with_name("uvicorn"))
    cmd = [uvicorn, "bench.peers.fastapi_app:app", "--app-dir", str(ROOT), "--host", "127.0.0.1", "--port", "{port}", "--workers", str(peer_workers())]
    return Server("fastapi", cmd, {**base_env(), "BENCH_TASKS": ",".join(tasks)}, "/ping", log)


# ---------------------------------------------------------------------------------------------------- load


def check(url: str, body: bytes, ctype: str) -> str:
    """One request before the load: the server must answer 2xx (else the error is reported, not timed)."""
    req = urllib.request.Request(url, data=body, headers={"Content-Type": ctype}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            r.read()
            return ""
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}: {exc.read()[:300]!r}"
    except OSError as exc:
        return str(exc)


def wrk(url: str, body_file: Path, ctype: str, connections: int, seconds: float) -> dict[str, Any]:
    env = {**os.environ, "BENCH_BODY": str(body_file), "BENCH_CTYPE": ctype}
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s", "--latency", "-s", str(LUA), url]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False, timeout=seconds + 60)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result: {out.stdout[-500:]} {out.stderr[-500:]}")
    r = json.loads(line.removeprefix("BENCH_JSON "))
    r["errors"] = r["connect_errors"] + r["read_errors"] + r["write_errors"] + r["status_errors"] + r["timeouts"]
    r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
    return r


def run_apis(server: Server, apis: list[Api], bodies: Path, concurrency: list[int], seconds: float, rnd: int, rows: list[dict[str, Any]]) -> None:
    for api in apis:
        mlflow = server.kind == "mlflow"
        url = server.url + ("/invocations" if mlflow else api.route)
        body_file = bodies / f"{api.name}.{'mlflow' if mlflow else 'raw'}"
        ctype = "application/json" if mlflow else api.ctype
        problem = check(url, body_file.read_bytes(), ctype)
        if problem:
            print(f"    {server.kind} {api.name}: not measured, the check request failed: {problem}", flush=True)
            rows.append({"round": rnd, "server": server.kind, "api": api.name, "concurrency": None, "failed": problem})
            continue
        wrk(url, body_file, ctype, 8, 1)  # warm-up, not recorded
        for c in concurrency:
            drained = server.settle()  # the last run's backlog is answered before this run starts
            r = wrk(url, body_file, ctype, c, seconds)
            rows.append({"round": rnd, "server": server.kind, "api": api.name, "concurrency": c, "drained_s": round(drained, 2), **r})
            print(
                f"    {server.kind:8s} {api.name:10s} c{c:<3d} {r['rps']:8.1f} req/s  p50 {r['p50_us'] / 1000:7.1f} ms  "
                f"p99 {r['p99_us'] / 1000:7.1f} ms  errors {r['errors']}  (waited {drained:.1f} s for idle)",
                flush=True,
            )


def aggregate(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for r in rows:
        if r.get("concurrency") is None:
            continue
        key = f"{r['server']}|{r['api']}|{r['concurrency']}"
        out.setdefault(key, []).append(r)
    agg = {}
    for key, rs in out.items():
        done = [r for r in rs if r["requests"] > 0]
        none = {"median": float("inf"), "q1": float("inf"), "q3": float("inf"), "min": float("inf"), "max": float("inf"), "n": 0}
        agg[key] = {
            "rps": spread([r["rps"] for r in rs]),
            # a run in which no request completed has no latency: the percentiles are of the runs that had some
            "p50_ms": spread([r["p50_us"] / 1000 for r in done]) if done else none,
            "p95_ms": spread([r["p95_us"] / 1000 for r in done]) if done else none,
            "p99_ms": spread([r["p99_us"] / 1000 for r in done]) if done else none,
            "errors": int(sum(r["errors"] for r in rs)),
            "requests": int(sum(r["requests"] for r in rs)),
            "runs_without_a_response": len(rs) - len(done),
        }
    return agg


def goals(agg: dict[str, Any], limits: dict[str, Any], apis: list[Api], concurrency: list[int]) -> list[dict[str, Any]]:
    """Per API and concurrency: BentoML against the better peer, the limit and MLflow's p50."""
    rows = []
    for api in apis:
        for c in concurrency:
            b = agg.get(f"bentoml|{api.name}|{c}")
            peers = {s: agg[f"{s}|{api.name}|{c}"] for s in ("mlflow", "fastapi") if f"{s}|{api.name}|{c}" in agg}
            if b is None or not peers:
                continue
            best = max(peers, key=lambda s: peers[s]["rps"]["median"])
            row: dict[str, Any] = {
                "api": api.name,
                "concurrency": c,
                "bentoml_rps": b["rps"]["median"],
                "better_peer": best,
                "peer_rps": peers[best]["rps"]["median"],
                "throughput_ratio": b["rps"]["median"] / peers[best]["rps"]["median"] if peers[best]["rps"]["median"] else float("inf"),
                "bentoml_p99_ms": b["p99_ms"]["median"],
                "peer_p99_ms": peers[best]["p99_ms"]["median"],
                "bentoml_errors": b["errors"],
            }
            row["throughput_met"] = row["throughput_ratio"] >= 1.0
            row["p99_met"] = row["bentoml_p99_ms"] <= row["peer_p99_ms"]
            row["errors_met"] = b["errors"] == 0
            if "mlflow" in peers:
                row["mlflow_ratio"] = b["rps"]["median"] / peers["mlflow"]["rps"]["median"] if peers["mlflow"]["rps"]["median"] else float("inf")
                if c == 1:
                    row["mlflow_p50_ms"] = peers["mlflow"]["p50_ms"]["median"]
                    row["bentoml_p50_ms"] = b["p50_ms"]["median"]
                    row["p50_met"] = row["bentoml_p50_ms"] <= row["mlflow_p50_ms"]
            if c == max(concurrency) and api.name in limits:
                lim = limits[api.name]["best_requests_per_s"]
                row["limit_rps"] = lim
                row["limit_share"] = b["rps"]["median"] / lim
                row["limit_met"] = row["limit_share"] >= 0.8
            rows.append(row)
    return rows


def yes(flag: bool | None) -> str:
    return "-" if flag is None else ("yes" if flag else "**no**")


def markdown(data: dict[str, Any]) -> str:
    agg, conc = data["results"], data["concurrency"]
    lines = [
        "# HTTP level: BentoML service vs `mlflow models serve` vs plain FastAPI + PyTorch",
        "",
        stamp_markdown(data["stamp"]),
        f"wrk, one thread, {data['seconds']} s per run after a 1 s warm-up, one input per request; "
        f"median over {data['rounds']} rounds (each round starts every server once); errors summed over rounds "
        "(non-2xx answers, socket errors, timeouts). MLflow's server is sent the model tensors the same input becomes "
        "and answers raw model outputs. "
        + (
            f"Worker processes: the Bento {data['workers']['bentoml']} (its default here: one per CPU), "
            f"`mlflow models serve` and FastAPI {data['workers']['peers']} each."
            if "workers" in data
            else "One worker process each."
        ),
        "",
        "| API | server | " + " | ".join(f"c{c} req/s | c{c} p50 / p95 / p99 ms | c{c} errors" for c in conc) + " |",
        "| --- | --- | " + " | ".join("--- | --- | ---" for _ in conc) + " |",
    ]
    for api in data["apis"]:
        for s in data["servers"]:
            cells = []
            for c in conc:
                a = agg.get(f"{s}|{api}|{c}")
                if a is None:
                    cells.append("- | - | -")
                    continue
                silent = a.get("runs_without_a_response", 0)
                note = f" ({silent} of {a['rps']['n']} runs: no response within the run)" if silent else ""
                cells.append(
                    f"{fmt(a['rps']['median'])} ({fmt(a['rps']['q1'], 2)}-{fmt(a['rps']['q3'], 2)}) | "
                    f"{fmt(a['p50_ms']['median'])} / {fmt(a['p95_ms']['median'])} / {fmt(a['p99_ms']['median'])}{note} | {a['errors']}"
                )
            lines.append(f"| {api} | {s} | " + " | ".join(cells) + " |")
    failed = [r for r in data["raw"] if r.get("failed")]
    if failed:
        lines += ["", "Not measured (the check request failed):", ""]
        lines += sorted({f"- {r['server']} {r['api']}: {r['failed']}" for r in failed})
    if data["limits"]:
        lines += ["", "The limit: ONNX Runtime alone on the tensors one request becomes (requests/s; rows per request in brackets):", ""]
        lines += ["| API | batch 1 | batch 32 | best |", "| --- | --- | --- | --- |"]
        for name, lim in data["limits"].items():
            per = lim["requests_per_s"]
            lines.append(f"| {name} ({lim['rows_per_request']}) | {fmt(per['1']['median'])} | {fmt(per['32']['median'])} | {fmt(lim['best_requests_per_s'])} (batch {lim['best_batch']}) |")
    lines += [
        "",
        "Goals, BentoML against the better peer at each concurrency:",
        "",
        "| API | c | BentoML req/s | better peer | peer req/s | ratio | vs MLflow | p99 BentoML / peer ms | errors | at c1: p50 BentoML / MLflow ms | at max c: share of the limit |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for g in data["goals"]:
        p50 = f"{fmt(g['bentoml_p50_ms'])} / {fmt(g['mlflow_p50_ms'])} ({yes(g['p50_met'])})" if "p50_met" in g else "-"
        lim = f"{100 * g['limit_share']:.0f}% of {fmt(g['limit_rps'])} ({yes(g['limit_met'])})" if "limit_met" in g else "-"
        lines.append(
            f"| {g['api']} | {g['concurrency']} | {fmt(g['bentoml_rps'])} | {g['better_peer']} | {fmt(g['peer_rps'])} | "
            f"{fmt(g['throughput_ratio'], 2)}x ({yes(g['throughput_met'])}) | {fmt(g.get('mlflow_ratio'), 2)}x | "
            f"{fmt(g['bentoml_p99_ms'])} / {fmt(g['peer_p99_ms'])} ({yes(g['p99_met'])}) | {g['bentoml_errors']} ({yes(g['errors_met'])}) | {p50} | {lim} |"
        )
    return "\n".join(lines) + "\n"


def render() -> int:
    """Re-aggregate ``http_level.json``'s raw runs and rewrite the Markdown (no new measurement)."""
    data = json.loads((RESULTS / "http_level.json").read_text())
    apis = [Api(name, "", "", b"", "", b"", []) for name in data["apis"]]
    data["results"] = aggregate(data["raw"])
    data["goals"] = goals(data["results"], data["limits"], apis, data["concurrency"])
    js, md = write_results("http_level", data, markdown(data))
    print(f"rewrote {js} and {md}")
    return 0


def main() -> int:
    if "--render" in sys.argv:
        return render()
    if shutil.which("wrk") is None:
        print("wrk not found: install it (apt-get install -y wrk) and run again", file=sys.stderr)
        return 2
    tasks = tasks_wanted()
    champs = champions(tasks)
    servers = env_list("BENCH_SERVERS", SERVERS)
    concurrency = [int(c) for c in env_list("BENCH_CONCURRENCY", ("1", "8", "32"))]
    rounds = env_int("BENCH_HTTP_ROUNDS", 2)
    seconds = env_float("BENCH_HTTP_SECONDS", 5)
    apis = build_apis(champs)
    st = stamp()
    RESULTS.mkdir(parents=True, exist_ok=True)
    logs = RESULTS / "logs"
    logs.mkdir(exist_ok=True)
    print(f"http level: {', '.join(a.name for a in apis)} on {', '.join(servers)}; c {concurrency}; {rounds} rounds of {seconds} s", flush=True)

    limits = {}
    for api in apis:
        if api.task in COMPUTE_BOUND:
            limits[api.name] = limit(champs[api.task], api, env_int("BENCH_ROUNDS", 7), env_float("BENCH_MIN_SECONDS", 0.4))
            print(f"  limit {api.name}: {limits[api.name]['best_requests_per_s']:.1f} req/s at batch {limits[api.name]['best_batch']}", flush=True)
    for ch in champs.values():  # free this process's sessions before the servers run
        ch.model = None

    rows: list[dict[str, Any]] = []
    starts: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-bodies-") as tmp:
        bodies = Path(tmp)
        for api in apis:
            (bodies / f"{api.name}.raw").write_bytes(api.body)
            (bodies / f"{api.name}.mlflow").write_bytes(api.mlflow_body)
        for rnd in range(rounds):
            order = servers[rnd % len(servers):] + servers[: rnd % len(servers)]
            for kind in order:
                print(f"  round {rnd + 1}/{rounds}: {kind}", flush=True)
                groups: list[tuple[Server, list[Api]]]
                if kind == "bentoml":
                    groups = [(bento_server(list(champs), logs / "bentoml.log"), apis)]
                elif kind == "fastapi":
                    groups = [(fastapi_server(list(champs), logs / "fastapi.log"), apis)]
                else:
                    groups = [(mlflow_server(a.task, logs / f"mlflow-{a.task}.log"), [a]) for a in apis]
                for server, group in groups:
                    try:
                        with server:
                            starts.append({"round": rnd, "server": kind, "apis": [a.name for a in group], "start_s": server.start_s})
                            run_apis(server, group, bodies, concurrency, seconds, rnd, rows)
                    except RuntimeError as exc:
                        print(f"    {exc}", flush=True)
                        rows += [{"round": rnd, "server": kind, "api": a.name, "concurrency": None, "failed": str(exc)} for a in group]
    agg = aggregate(rows)
    data = {
        "stamp": st,
        "rounds": rounds,
        "seconds": seconds,
        "workers": {"bentoml": bento_workers(), "peers": peer_workers()},
        "concurrency": concurrency,
        "servers": servers,
        "apis": [a.name for a in apis],
        "limits": limits,
        "results": agg,
        "goals": goals(agg, limits, apis, concurrency),
        "server_starts": starts,
        "raw": rows,
    }
    js, md = write_results("http_level" + os.environ.get("BENCH_RESULT_SUFFIX", ""), data, markdown(data))
    print(markdown(data))
    print(f"wrote {js} and {md}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
