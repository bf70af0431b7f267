"""Shadow level: what ``ZOO_SHADOW_SHARE=1`` adds to the caller's latency (the goal: p50 at c8 at most 10% more).

In a project of its own (a temporary folder; the demo's state is not touched), each task of ``BENCH_SHADOW_TASKS``
(default all six) gets a champion and a challenger (two tiny trainings on the mirror's samples), then
two ``bentoml serve services.<task>:Service`` run side by side, one with the share at 0 and one at 1, and ``wrk``
loads them alternately, ``BENCH_SHADOW_ROUNDS`` times (default 15) each, in an order that swaps every round. Each run:
a 1 s warm-up, both servers idle, then ``wrk`` at c8 for ``BENCH_SHADOW_SECONDS`` (default 3) posting the same
request (:func:`request`). Figures are medians over the rounds. The goal is judged on the paired ratio: the median
over rounds of that round's p50 at share 1 over its p50 at share 0 (runs next to each other in time, so that the
machine's drift cancels); the ratio of the two medians is reported beside it.

    python bench/shadow_level.py          # writes bench/results/shadow.{json,md}
"""

from __future__ import annotations

import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import RESULTS, env_float, env_int, fmt, spread, stamp, stamp_markdown, write_results  # noqa: E402
from bench.http_level import Server, _multipart, wrk  # noqa: E402
from pipelines.serving import serve_command  # noqa: E402

GOAL = 1.10
"""The share at 1 may add at most 10% to the p50 at c8."""


def project_env(root: Path) -> dict[str, str]:
    """This environment pointed at the project in ``root`` (its ZOO_HOME under it), this venv first on PATH."""
    from models.settings import Settings

    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    own = Settings.from_env({"ZOO_PROJECT_ROOT": str(root), "ZOO_HOME": str(root / ".zoo")}).tool_env()
    env = {**os.environ, **own, "PATH": path, "ZOO_PROJECT_ROOT": str(root)}
    for key in ("ZOO_SHADOW_SHARE", "ZOO_CANARY_SHARE", "ZOO_CAPTURE_SHARE", "ZOO_TASKS"):
        env.pop(key, None)
    return env


def zoo(env: dict[str, str], *args: str) -> dict[str, Any]:
    out = subprocess.run([str(Path(sys.executable).with_name("zoo")), *args, "--json"], env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"zoo {' '.join(args)} failed ({out.returncode}): {out.stderr[-2000:]}")
    return json.loads(out.stdout)


ROUTES = {"recommend": "/rate", "classify": "/classify", "sales": "/sales", "sentiment": "/sentiment", "segment": "/segment", "superres": "/superres"}


def request(root: Path, task: str) -> tuple[bytes, str]:
    """One request of ``task``'s route from the project's data, and its content type."""
    data = root / "data"
    if task == "recommend":
        with (data / "movie_lens_sample" / "ratings.csv").open() as f:
            row = next(csv.DictReader(f))
        return json.dumps({"user_ids": [int(row["userId"])], "movie_ids": [int(row["movieId"])]}).encode(), "application/json"
    if task == "sales":
        with (data / "rossmann_sample" / "train.csv").open() as f:
            row = list(csv.DictReader(f))[-1]
        record = {"Store": int(row["Store"]), "Date": row["Date"], "Open": 1, "Promo": int(row["Promo"]), "StateHoliday": row["StateHoliday"], "SchoolHoliday": int(row["SchoolHoliday"])}
        return json.dumps({"records": [record]}).encode(), "application/json"
    if task == "sentiment":
        with (data / "imdb_sample" / "texts.csv").open() as f:
            text = next(csv.DictReader(f))["text"]
        return json.dumps({"texts": [text]}).encode(), "application/json"
    if task == "classify":
        digit = sorted((data / "mnist_tiny" / "valid" / "7").glob("*.png"))[0]
        return _multipart("image", "digit.png", digit.read_bytes(), "image/png")
    from io import BytesIO

    from PIL import Image

    photo = Image.open(sorted((data / "camvid_tiny" / "images").glob("*.png"))[0]).convert("RGB")
    if task == "superres":  # a small photo: its tiles at the model's scale are the work
        photo = photo.resize((128, 96))
    out = BytesIO()
    photo.save(out, format="PNG")
    return _multipart("image", f"{task}.png", out.getvalue(), "image/png")


def prepare(root: Path, tasks: list[str]) -> tuple[dict[str, str], dict[str, tuple[str, str, bytes, str]]]:
    """A project where each task has a champion and a challenger; returns its env and, per task, both versions,
    a request body and its content type."""
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    (root / ".gitignore").write_text("/.zoo/\n/data\n")
    env = project_env(root)
    if not os.environ.get("ZOO_DATA_MIRROR"):
        raise SystemExit("ZOO_DATA_MIRROR is not set: point it at the unpacked course datasets (make bench sets it beside ../shared/datasets)")
    zoo(env, "data", "ingest")
    out = {}
    for task in tasks:
        champion = str(zoo(env, "train", task, "--config", "tiny")["version"])
        zoo(env, "promote", task, champion, "--reason", "shadow benchmark")
        challenger = str(zoo(env, "train", task, "--config", "tiny", "--force")["version"])
        body, ctype = request(root, task)
        out[task] = (champion, challenger, body, ctype)
    return env, out


def markdown(data: dict[str, Any]) -> str:
    lines = [
        "# Shadow traffic: the caller's latency (`bench/shadow_level.py`)",
        "",
        stamp_markdown(data["stamp"]),
        f"Two `bentoml serve services.<task>:Service` of each task side by side (share 0 and share 1), champion and challenger "
        f"registered; wrk c8 on one at a time, {data['seconds']} s per run after a 1 s warm-up, {data['rounds']} rounds per share, "
        "alternating. Medians over rounds (min-max). "
        "shadowed: requests compared with the challenger; skipped: not shadowed because the worker stayed busy with callers.",
        "",
        "| task | route | ZOO_SHADOW_SHARE | p50 ms | p99 ms | req/s | errors | shadowed | skipped |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for task, t in data["tasks"].items():
        for share, s in t["shares"].items():
            lines.append(
                f"| {task} | {ROUTES[task]} | {share} | {fmt(s['p50_ms']['median'])} ({fmt(s['p50_ms']['min'])}-{fmt(s['p50_ms']['max'])}) | "
                f"{fmt(s['p99_ms']['median'])} | {fmt(s['rps']['median'])} | {s['errors']} | {s['shadowed']} | {s['skipped']} |"
            )
    lines += ["", f"p50 at share 1 over share 0, paired by round (goal at most {GOAL:.2f}); the ratio of the medians in brackets:", ""]
    for task, t in data["tasks"].items():
        lines.append(f"- {task}: **{t['ratio']:.3f}** ({'met' if t['ratio'] <= GOAL else 'NOT met'}; {t['ratio_of_medians']:.3f})")
    return "\n".join(lines) + "\n"


def counted(url: str, name: str) -> int:
    from pipelines.live import scrape

    return int(sum(scrape((f"{url}/metrics",), (name,)).values()))


def measure(env: dict[str, str], task: str, body: bytes, ctype: str, tmp: Path, rounds: int, seconds: float) -> dict[str, list[dict[str, Any]]]:
    """Both servers (share 0 and 1) up at once, each with its own BentoML home; wrk on one, then the other, each round."""
    logs = RESULTS / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    body_file = tmp / f"{task}.body"
    body_file.write_bytes(body)
    cmd = serve_command(task, 0, host="127.0.0.1")
    cmd[cmd.index("--port") + 1] = "{port}"
    runs: dict[str, list[dict[str, Any]]] = {"0": [], "1": []}
    homes = {share: {**env, "ZOO_SHADOW_SHARE": share, "BENTOML_HOME": str(tmp / f"bentoml-{task}-{share}")} for share in runs}
    with Server("shadow-0", cmd, homes["0"], "/readyz", logs / "shadow.log") as off, Server("shadow-1", cmd, homes["1"], "/readyz", logs / "shadow.log") as on:
        servers = {"0": off, "1": on}
        for server in servers.values():
            wrk(f"{server.url}{ROUTES[task]}", body_file, ctype, 8, 1)
        for rnd in range(rounds):
            for share in ("0", "1") if rnd % 2 == 0 else ("1", "0"):
                server = servers[share]
                url = f"{server.url}{ROUTES[task]}"
                wrk(url, body_file, ctype, 8, 1)
                for other in servers.values():  # the other one's shadow work, if any, is done too
                    other.settle()
                before = counted(server.url, "zoo_shadow_requests_total"), counted(server.url, "zoo_shadow_skipped_total")
                r = wrk(url, body_file, ctype, 8, seconds)
                r["shadowed"] = counted(server.url, "zoo_shadow_requests_total") - before[0]
                r["skipped"] = counted(server.url, "zoo_shadow_skipped_total") - before[1]
                runs[share].append(r)
                print(f"  {task} round {rnd + 1}/{rounds} share {share}: p50 {r['p50_us'] / 1000:.2f} ms, {r['rps']:.0f} req/s, shadowed {r['shadowed']}, skipped {r['skipped']}", flush=True)
    return runs


def summary(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    shares = {
        share: {
            "p50_ms": spread([r["p50_us"] / 1000 for r in rs]),
            "p99_ms": spread([r["p99_us"] / 1000 for r in rs]),
            "rps": spread([r["rps"] for r in rs]),
            "errors": sum(r["errors"] for r in rs),
            "shadowed": sum(r["shadowed"] for r in rs),
            "skipped": sum(r["skipped"] for r in rs),
        }
        for share, rs in runs.items()
    }
    paired = statistics.median(b["p50_us"] / a["p50_us"] for a, b in zip(runs["0"], runs["1"]))
    return {"shares": shares, "ratio": paired, "ratio_of_medians": shares["1"]["p50_ms"]["median"] / shares["0"]["p50_ms"]["median"], "runs": runs}


def main() -> int:
    rounds, seconds = env_int("BENCH_SHADOW_ROUNDS", 15), env_float("BENCH_SHADOW_SECONDS", 3)
    tasks = [t for t in os.environ.get("BENCH_SHADOW_TASKS", ",".join(ROUTES)).split(",") if t.strip()]
    unknown = [t for t in tasks if t not in ROUTES]
    if unknown:
        raise SystemExit(f"BENCH_SHADOW_TASKS: {', '.join(unknown)} not among {', '.join(ROUTES)}")
    st = stamp()
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-shadow-") as tmp:
        env, prepared = prepare(Path(tmp) / "project", tasks)
        for task, (champion, challenger, body, ctype) in prepared.items():
            results[task] = {"champion": champion, "challenger": challenger, **summary(measure(env, task, body, ctype, Path(tmp), rounds, seconds))}
    data = {"stamp": st, "rounds": rounds, "seconds": seconds, "goal": GOAL, "tasks": results}
    js, md = write_results("shadow", data, markdown(data))
    print(markdown(data))
    print(f"wrote {js} and {md}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
