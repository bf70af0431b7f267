"""Sustained load on the all-tasks Bento: every API at a steady mix, clients that hang up, and champion swaps.

For ``SOAK_MINUTES`` (10): ``SOAK_CLIENTS`` (8) closed-loop clients send every API's request
(weighted towards the cheap ones), one more sends image requests and hangs up after 20 ms.
After the first minute, ``SOAK_CYCLES`` (200) promote/rollback cycles move ``recommend``'s ``champion``
between two versions, each cycle waiting until the service answers with the new one.
Reported per minute: requests, 5xx, other errors, hang-ups, p50/p99 and the RSS of every server
process; and ``/rate``'s median latency and the server's RSS after the first and the last cycle.

It runs on a copy of the registry ``make demo`` left (the second version is a copy of the
champion's artifacts), so the demo's registry is not changed.

    python bench/soak.py     # after make demo; writes bench/results/soak.{json,md}
    SOAK_MINUTES=3 SOAK_CYCLES=50 python bench/soak.py
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import champions, env_int, fmt, settings, stamp, stamp_markdown, write_results  # noqa: E402
from bench.http_level import Api, bento_server, build_apis  # noqa: E402

WARM_UP_SECONDS = 60.0
"""The swaps start after the first minute of load: by then every worker has loaded and warmed every model."""
WEIGHTS = {"rate": 6, "recommend": 6, "sales": 6, "sentiment": 3, "classify": 3, "segment": 1, "superres": 1}


def tree_rss(pid: int) -> dict[int, int]:
    """RSS in bytes of ``pid`` and every process below it."""
    import psutil

    root = psutil.Process(pid)
    out = {}
    for proc in (root, *root.children(recursive=True)):
        try:
            out[proc.pid] = proc.memory_info().rss
        except psutil.Error:
            pass
    return out


def second_version(registry_uri: str) -> tuple[str, str]:
    """A copy of ``recommend``'s champion as a new version (same artifacts and checksums); (old, new) version numbers."""
    from mlflow import MlflowClient

    c = MlflowClient(registry_uri, registry_uri)
    old = c.get_model_version_by_alias("recommend", "champion")
    new = c.copy_model_version(f"models:/recommend/{old.version}", "recommend")
    for key, value in old.tags.items():
        c.set_model_version_tag("recommend", new.version, key, value)
    return str(old.version), str(new.version)


async def load(url: str, apis: list[Api], until: float, records: list[tuple[float, str, Any, float]], seed: int) -> None:
    """One closed-loop client: a weighted random API, again and again."""
    import httpx

    rnd = random.Random(seed)
    weights = [WEIGHTS.get(a.name, 1) for a in apis]
    async with httpx.AsyncClient(timeout=120) as client:
        while time.monotonic() < until:
            api = rnd.choices(apis, weights)[0]
            t0 = time.monotonic()
            try:
                r = await client.post(url + api.route, content=api.body, headers={"content-type": api.ctype})
                records.append((t0, api.name, r.status_code, time.monotonic() - t0))
            except httpx.HTTPError as exc:
                records.append((t0, api.name, type(exc).__name__, time.monotonic() - t0))


async def hang_ups(url: str, apis: list[Api], until: float, counter: list[int]) -> None:
    """A client that sends image requests and disconnects after 20 ms, mid-upload or mid-response."""
    import httpx

    heavy = [a for a in apis if a.name in ("segment", "superres", "classify")]
    while time.monotonic() < until and heavy:
        async with httpx.AsyncClient(timeout=httpx.Timeout(0.02)) as client:
            api = heavy[counter[0] % len(heavy)]
            try:
                await client.post(url + api.route, content=api.body, headers={"content-type": api.ctype})
            except httpx.HTTPError:
                pass
        counter[0] += 1
        await asyncio.sleep(0.05)


async def rate_median_ms(url: str, api: Api, n: int = 100) -> float:
    import httpx

    times = []
    async with httpx.AsyncClient(timeout=60) as client:
        for _ in range(n):
            t0 = time.perf_counter()
            await client.post(url + api.route, content=api.body, headers={"content-type": api.ctype})
            times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


async def cycles(url: str, store: Any, rate: Api, versions: tuple[str, str], n: int, until: float, pid: int, out: dict[str, Any]) -> None:
    """Move the champion between the two versions ``n`` times; each time wait until the service serves the new one."""
    import httpx

    done, took = 0, []
    await asyncio.sleep(min(WARM_UP_SECONDS, max(0.0, until - time.monotonic() - 60)))  # the first minute warms every model up
    async with httpx.AsyncClient(timeout=60) as client:
        while done < n and time.monotonic() < until:
            target = versions[(done + 1) % 2]
            t0 = time.monotonic()
            await asyncio.to_thread(store.set_alias, "recommend", "champion", target)
            while time.monotonic() < until:
                r = await client.post(url + rate.route, content=rate.body, headers={"content-type": rate.ctype})
                if r.headers.get("x-model-version") == target:
                    break
                await asyncio.sleep(0.1)
            else:
                break
            took.append(time.monotonic() - t0)
            done += 1
            if done == 1:
                out["first"] = {"rate_median_ms": await rate_median_ms(url, rate), "rss_bytes": sum(tree_rss(pid).values())}
    out["last"] = {"rate_median_ms": await rate_median_ms(url, rate), "rss_bytes": sum(tree_rss(pid).values())}
    out["cycles"], out["cycle_seconds_median"] = done, statistics.median(took) if took else None
    await asyncio.to_thread(store.set_alias, "recommend", "champion", versions[0])


async def sample_rss(pid: int, start: float, until: float, out: list[dict[str, Any]]) -> None:
    while time.monotonic() < until:
        out.append({"t": time.monotonic() - start, "rss": tree_rss(pid)})
        await asyncio.sleep(15.0)


def per_minute(records: list[tuple[float, str, Any, float]], rss: list[dict[str, Any]], start: float, minutes: int) -> list[dict[str, Any]]:
    rows = []
    for m in range(minutes):
        got = [r for r in records if m * 60 <= r[0] - start < (m + 1) * 60]
        ok = [r[3] * 1000 for r in got if isinstance(r[2], int) and r[2] < 500]
        samples = [s for s in rss if m * 60 <= s["t"] < (m + 1) * 60] or rss[-1:]
        last = samples[-1]["rss"] if samples else {}
        rows.append({
            "minute": m + 1,
            "requests": len(got),
            "status_5xx": sum(1 for r in got if isinstance(r[2], int) and r[2] >= 500),
            "status_4xx": sum(1 for r in got if isinstance(r[2], int) and 400 <= r[2] < 500),
            "errors": sum(1 for r in got if not isinstance(r[2], int)),
            "p50_ms": float(np.percentile(ok, 50)) if ok else None,
            "p99_ms": float(np.percentile(ok, 99)) if ok else None,
            "rss_mb": {str(pid): round(v / 2**20, 1) for pid, v in sorted(last.items())},
            "rss_total_mb": round(sum(last.values()) / 2**20, 1),
        })  # fmt: skip
    return rows


def goals(rows: list[dict[str, Any]], swap: dict[str, Any], cycles_wanted: int) -> list[dict[str, Any]]:
    second, last = rows[1] if len(rows) > 1 else rows[0], rows[-1]
    out = [
        {"goal": "no 5xx and no failed request", "met": all(r["status_5xx"] == 0 and r["errors"] == 0 for r in rows)},
        {"goal": "RSS growth under 10% from minute 2 to the last", "met": last["rss_total_mb"] <= 1.10 * second["rss_total_mb"],
         "figure": f"{second['rss_total_mb']} -> {last['rss_total_mb']} MB"},
        {"goal": "last minute's p99 within 1.5x of minute 2's", "met": (last["p99_ms"] or 0) <= 1.5 * (second["p99_ms"] or 0),
         "figure": f"{fmt(second['p99_ms'])} -> {fmt(last['p99_ms'])} ms"},
        {"goal": f"{cycles_wanted} promote/rollback cycles done", "met": swap.get("cycles", 0) >= cycles_wanted, "figure": str(swap.get("cycles"))},
    ]  # fmt: skip
    if "first" in swap:
        f, la = swap["first"], swap["last"]
        out.append({"goal": "/rate median after the last cycle within 10% of after the first", "met": la["rate_median_ms"] <= 1.10 * f["rate_median_ms"],
                    "figure": f"{fmt(f['rate_median_ms'])} -> {fmt(la['rate_median_ms'])} ms"})  # fmt: skip
        out.append({"goal": "server RSS after the last cycle within 10% of after the first", "met": la["rss_bytes"] <= 1.10 * f["rss_bytes"],
                    "figure": f"{f['rss_bytes'] / 2**20:.0f} -> {la['rss_bytes'] / 2**20:.0f} MB"})  # fmt: skip
    return out


def markdown(data: dict[str, Any]) -> str:
    lines = [
        "# Soak: the all-tasks Bento under a steady mix",
        "",
        stamp_markdown(data["stamp"]),
        f"{data['minutes']} min, {data['clients']} closed-loop clients over every API plus one that hangs up after 20 ms "
        f"({data['hang_ups']} hang-ups); {data['swap'].get('cycles')} champion swaps of recommend "
        f"(median {fmt(data['swap'].get('cycle_seconds_median'))} s each, ZOO_POLL_SECONDS={data['poll_seconds']}).",
        "",
        "| minute | requests | 5xx | 4xx | failed | p50 ms | p99 ms | RSS of the server's processes (MB) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in data["per_minute"]:
        procs = ", ".join(f"{v:g}" for v in r["rss_mb"].values())
        lines.append(f"| {r['minute']} | {r['requests']} | {r['status_5xx']} | {r['status_4xx']} | {r['errors']} | {fmt(r['p50_ms'])} | {fmt(r['p99_ms'])} | {r['rss_total_mb']:g} ({procs}) |")
    lines += ["", "| goal | met | figure |", "| --- | --- | --- |"]
    lines += [f"| {g['goal']} | {'yes' if g['met'] else '**no**'} | {g.get('figure', '')} |" for g in data["goals"]]
    return "\n".join(lines) + "\n"


async def run(url: str, pid: int, apis: list[Api], store: Any, versions: tuple[str, str], minutes: int, clients: int, n_cycles: int) -> dict[str, Any]:
    start = time.monotonic()
    until = start + minutes * 60
    records: list[tuple[float, str, Any, float]] = []
    rss: list[dict[str, Any]] = []
    hung = [0]
    swap: dict[str, Any] = {}
    rate = next(a for a in apis if a.name == "rate")
    await asyncio.gather(
        *(load(url, apis, until, records, seed) for seed in range(clients)),
        hang_ups(url, apis, until, hung),
        cycles(url, store, rate, versions, n_cycles, until, pid, swap),
        sample_rss(pid, start, until, rss),
    )
    return {"records": records, "rss": rss, "start": start, "hang_ups": hung[0], "swap": swap}


def main() -> None:
    from dataclasses import replace

    from models.store import light

    minutes, clients, n_cycles = env_int("SOAK_MINUTES", 10), env_int("SOAK_CLIENTS", 8), env_int("SOAK_CYCLES", 200)
    poll = os.environ.get("SOAK_POLL_SECONDS", "0.5")
    st = settings()
    db = Path(st.registry_uri.removeprefix("sqlite:///"))
    if not st.registry_uri.startswith("sqlite:///") or not db.is_file():
        raise SystemExit(f"bench/soak.py runs on a copy of the embedded registry make demo leaves; none at {st.registry_uri}")
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(db, Path(tmp) / "mlflow.db")
        uri = f"sqlite:///{Path(tmp) / 'mlflow.db'}"
        os.environ.update({"MLFLOW_TRACKING_URI": uri, "MLFLOW_REGISTRY_URI": uri})
        os.environ.setdefault("BENCH_BENTO_ENV", f"ZOO_POLL_SECONDS={poll}")
        copy = replace(st, tracking_uri=uri, registry_uri=uri)
        versions = second_version(uri)
        champs = champions(sorted(WEIGHTS.keys() - {"rate"}))
        apis = build_apis(champs)
        logs = Path(tmp)
        with bento_server(sorted(champs), logs / "soak-bentoml.log") as server:
            got = asyncio.run(run(server.url, server.proc.pid, apis, light.connect(copy, uri), versions, minutes, clients, n_cycles))
    rows = per_minute(got["records"], got["rss"], got["start"], minutes)
    data = {
        "stamp": stamp(), "minutes": minutes, "clients": clients, "poll_seconds": poll, "hang_ups": got["hang_ups"],
        "per_minute": rows, "swap": got["swap"], "goals": goals(rows, got["swap"], n_cycles),
    }  # fmt: skip
    _, md = write_results("soak", data, markdown(data))
    print(md.read_text())


if __name__ == "__main__":
    main()
