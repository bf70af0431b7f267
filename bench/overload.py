"""Overload: the all-tasks Bento at four times the load it can take, on the compute-bound APIs.

Per API: first its capacity, with ``wrk`` at concurrency 32 (requests/s); then an open-loop
client (requests sent on a fixed clock, whether or not earlier ones were answered) at
``BENCH_OVERLOAD_FACTOR`` (4) times that rate for ``BENCH_OVERLOAD_SECONDS`` (15). Each
answer is sorted by status: admitted (200) and refused (503 with ``Retry-After``), anything
else is an error. Shown: the latency of both, against the task's wait budget; after the
load, that the server is still ready and answers one request.

    python bench/overload.py     # after make demo; writes bench/results/overload.{json,md}
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import RESULTS, champions, env_float, env_list, fmt, stamp, stamp_markdown, write_results  # noqa: E402
from bench.http_level import Api, bento_server, build_apis, wrk  # noqa: E402

DEFAULT_APIS = ("segment", "superres")


async def open_loop(url: str, api: Api, rate: float, seconds: float) -> list[dict[str, Any]]:
    """Send ``rate`` requests/s for ``seconds`` on a fixed clock; one record per request."""
    import httpx

    results: list[dict[str, Any]] = []
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=256)
    async with httpx.AsyncClient(limits=limits, timeout=120) as client:

        async def one() -> None:
            t0 = time.monotonic()
            try:
                r = await client.post(url, content=api.body, headers={"content-type": api.ctype})
                results.append({"status": r.status_code, "s": time.monotonic() - t0, "retry_after": r.headers.get("retry-after")})
            except httpx.HTTPError as exc:
                results.append({"status": type(exc).__name__, "s": time.monotonic() - t0, "retry_after": None})

        tasks = []
        start = time.monotonic()
        n = int(rate * seconds)
        for i in range(n):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one()))
        await asyncio.gather(*tasks)
    return results


def quantiles(xs: list[float]) -> dict[str, float | None]:
    if not xs:
        return {"p50_ms": None, "p99_ms": None, "max_ms": None}
    a = np.asarray(xs) * 1000
    return {"p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99)), "max_ms": float(a.max())}


def answers_once(url: str, api: Api) -> int:
    req = urllib.request.Request(url, data=api.body, headers={"content-type": api.ctype}, method="POST")
    with urllib.request.urlopen(req, timeout=60) as r:
        return r.status


def markdown(data: dict[str, Any]) -> str:
    out = [
        "# Overload: the Bento at four times its capacity",
        "",
        stamp_markdown(data["stamp"]),
        f"Capacity: `wrk` at concurrency 32 for {data['capacity_seconds']:g} s. Then an open-loop client at "
        f"{data['factor']:g}x that rate for {data['seconds']:g} s (requests sent on a fixed clock). "
        "Admitted: 200; refused: 503 with `Retry-After`; errors: any other answer or a failed connection. "
        "Budget: the task's wait budget (`ZOO_WAIT_BUDGET_MS`, else the task's own).",
        "",
        "| API | capacity req/s | offered req/s | sent | admitted | admitted p50 / p99 / max ms | refused | refused p50 / p99 ms | Retry-After on every 503 | errors | wait budget s | admitted p99 within budget | ready after, and answers |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in data["apis"]:
        a, f = r["admitted_latency"], r["refused_latency"]
        out.append(
            f"| {r['api']} | {fmt(r['capacity_rps'])} | {fmt(r['offered_rps'])} | {r['sent']} | {r['admitted']} | "
            f"{fmt(a['p50_ms'])} / {fmt(a['p99_ms'])} / {fmt(a['max_ms'])} | {r['refused']} | {fmt(f['p50_ms'])} / {fmt(f['p99_ms'])} | "
            f"{'yes' if r['retry_after_on_every_503'] else '**no**'} | {r['errors']} | {fmt(r['wait_budget_s'])} | "
            f"{'yes' if r['within_budget'] else '**no**'} | {'yes' if r['healthy_after'] else '**no**'} |"
        )
    return "\n".join(out) + "\n"


def main() -> int:
    from models.registry import get_serving

    wanted = env_list("BENCH_OVERLOAD_APIS", DEFAULT_APIS)
    factor = env_float("BENCH_OVERLOAD_FACTOR", 4)
    seconds = env_float("BENCH_OVERLOAD_SECONDS", 15)
    capacity_seconds = env_float("BENCH_HTTP_SECONDS", 5)
    champs = champions(sorted(set(wanted)))
    apis = [a for a in build_apis(champs) if a.name in wanted]
    logs = RESULTS / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    rows = []
    with bento_server(sorted(champs), logs / "overload-bentoml.log") as server, tempfile.TemporaryDirectory() as tmp:
        for api in apis:
            body = Path(tmp) / f"{api.name}.raw"
            body.write_bytes(api.body)
            url = server.url + api.route
            server.settle()
            capacity = wrk(url, body, api.ctype, 32, capacity_seconds)["rps"]
            server.settle()
            offered = factor * capacity
            print(f"  {api.name}: capacity {capacity:.1f} req/s; offering {offered:.1f} req/s for {seconds:g} s", flush=True)
            results = asyncio.run(open_loop(url, api, offered, seconds))
            admitted = [r["s"] for r in results if r["status"] == 200]
            refused = [r for r in results if r["status"] == 503]
            errors = [r for r in results if r["status"] not in (200, 503)]
            server.settle()
            try:
                with urllib.request.urlopen(server.url + "/readyz", timeout=10) as r:
                    ready = r.status == 200
                healthy = ready and answers_once(url, api) == 200
            except OSError:
                healthy = False
            budget = get_serving(api.task).wait_budget_s
            a = quantiles(admitted)
            row = {
                "api": api.name,
                "capacity_rps": capacity,
                "offered_rps": offered,
                "sent": len(results),
                "admitted": len(admitted),
                "refused": len(refused),
                "errors": len(errors),
                "error_kinds": sorted({str(r["status"]) for r in errors}),
                "admitted_latency": a,
                "refused_latency": quantiles([r["s"] for r in refused]),
                "retry_after_on_every_503": all(r["retry_after"] for r in refused),
                "wait_budget_s": budget,
                "within_budget": a["p99_ms"] is not None and a["p99_ms"] <= budget * 1000,
                "healthy_after": healthy,
            }
            print(f"    admitted {row['admitted']}, refused {row['refused']}, errors {row['errors']} {row['error_kinds']}; admitted p99 {fmt(a['p99_ms'])} ms", flush=True)
            rows.append(row)
    data = {"stamp": stamp(), "factor": factor, "seconds": seconds, "capacity_seconds": capacity_seconds, "apis": rows}
    _, md = write_results("overload", data, markdown(data))
    print(f"wrote {md}")
    return 0 if all(r["errors"] == 0 and r["healthy_after"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
