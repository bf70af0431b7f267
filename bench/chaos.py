"""Faults under load: what fails, what survives, what is left behind.

Each scenario runs against a real ``bentoml serve`` (or a real retrain) on a copy of the
registry ``make demo`` left, with steady load from closed-loop clients, and checks its goals:

- ``worker-kill``: one worker of the all-tasks Bento is killed with SIGKILL; the server starts a
  new one, and only requests that were in flight when it died fail.
- ``hang-ups``: three rounds of ``CHAOS_HANGUPS`` (500) clients hanging up mid-upload and as many
  mid-response; afterwards every worker holds the file descriptors, connections and event-loop
  tasks it held before, the last round adds under 5% memory, and no hang-up is counted as a 5xx.
- ``registry-restart``: a real ``mlflow server`` on PostgreSQL is stopped and started again
  under load: no request fails, and a promotion made after it came back is served.
- ``registry-restart``: :mod:`bench.chaos_registry`; ``retrain-kill`` and ``disk-full``: :mod:`bench.chaos_retrain`.

    python bench/chaos.py                    # after make demo; writes bench/results/chaos.{json,md}
    CHAOS_SCENARIOS=worker-kill,hang-ups python bench/chaos.py
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import champions, env_int, env_list, settings, stamp, stamp_markdown, write_results  # noqa: E402
from bench.http_level import Api, Server, bento_server, build_apis  # noqa: E402
from bench.soak import WEIGHTS  # noqa: E402

SCENARIOS = ("worker-kill", "hang-ups", "registry-restart", "retrain-kill", "disk-full")
PG = "postgresql://postgres@127.0.0.1:5432"
Record = tuple[float, float, str, Any, str, str]
"""(start, end, API, HTTP status or error name, model version, the service's rejection reason)."""


async def load(url: str, apis: list[Api], stop: asyncio.Event, records: list[Record], seed: int) -> None:
    """One closed-loop client over the weighted mix of APIs until ``stop``."""
    import httpx

    rnd = random.Random(seed)
    weights = [WEIGHTS.get(a.name, 1) for a in apis]
    async with httpx.AsyncClient(timeout=60) as client:
        while not stop.is_set():
            api = rnd.choices(apis, weights)[0]
            t0 = time.monotonic()
            try:
                r = await client.post(url + api.route, content=api.body, headers={"content-type": api.ctype})
                records.append((t0, time.monotonic(), api.name, r.status_code, r.headers.get("x-model-version", ""), r.headers.get("x-zoo-rejection", "")))
            except httpx.HTTPError as exc:
                records.append((t0, time.monotonic(), api.name, type(exc).__name__, "", ""))


def failed(records: list[Record]) -> list[Record]:
    return [r for r in records if not isinstance(r[3], int) or r[3] >= 500]


def kinds(records: list[Record]) -> dict[str, int]:
    """How many failed, by API, status or error, and the service's reason (``X-Zoo-Rejection``)."""
    from collections import Counter

    return dict(Counter(" ".join(str(x) for x in (r[2], r[3], r[5]) if x) for r in failed(records)).most_common())


async def served_after(records: list[Record], version: str, since: float, timeout: float) -> float | None:
    """Seconds from ``since`` until a request sent after it was answered by ``version``; ``None`` if none within ``timeout``."""
    while time.monotonic() < since + timeout:
        await asyncio.sleep(0.2)
        if any(r[4] == version and r[0] > since for r in records[-50:]):
            return time.monotonic() - since
    return None


def workers(pid: int) -> list[Any]:
    """The server's worker processes (BentoML's arbiter's children that run the service)."""
    import psutil

    out = []
    for p in psutil.Process(pid).children(recursive=True):
        try:
            cmd = " ".join(p.cmdline())
            if p.status() != psutil.STATUS_ZOMBIE and ("worker" in cmd or "_service" in cmd):
                out.append(p)
        except psutil.Error:  # gone, or a zombie not yet reaped
            continue
    return out


def goal(text: str, met: bool, figure: str = "") -> dict[str, Any]:
    return {"goal": text, "met": bool(met), "figure": figure}


# ------------------------------------------------------------------------------------------------ worker-kill


async def worker_kill(server: Server, apis: list[Api], clients: int) -> dict[str, Any]:
    """SIGKILL one worker 20 s into the load; keep the load on until a new worker has served, and 20 s more."""
    import httpx
    import psutil

    stop, records = asyncio.Event(), []
    loaders = [asyncio.create_task(load(server.url, apis, stop, records, seed)) for seed in range(clients)]
    await asyncio.sleep(20)
    before = {p.pid: p for p in workers(server.proc.pid)}
    victim = min(before)
    held = sum(1 for c in before[victim].net_connections("tcp") if c.status == psutil.CONN_ESTABLISHED)
    killed_at = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    replaced_s, new = None, set()
    rate = next(a for a in apis if a.name == "rate")
    async with httpx.AsyncClient(timeout=30) as probe:
        while time.monotonic() < killed_at + 240 and replaced_s is None:
            await asyncio.sleep(0.5)
            new = {p.pid for p in workers(server.proc.pid)} - set(before)
            if new:  # fresh connections until the new worker has answered some (its pid shows in /metrics)
                await probe.post(server.url + rate.route, content=rate.body, headers={"content-type": rate.ctype, "connection": "close"})
                if {str(p) for p in new} & set(await asyncio.to_thread(loop_tasks, server.url)):
                    replaced_s = time.monotonic() - killed_at
    await asyncio.sleep(20)
    stop.set()
    await asyncio.gather(*loaders)
    bad = failed(records)
    in_flight = [r for r in records if r[0] < killed_at < r[1]]
    late = [r for r in bad if r[0] > killed_at + 1.0]
    return {
        "workers": len(before), "killed_pid": victim, "connections_of_killed": held, "requests": len(records), "failed": len(bad), "failures": kinds(records),
        "in_flight_at_kill": len(in_flight), "failed_later_than_1s": len(late), "replacement_serving_after_s": replaced_s, "new_pids": sorted(new),
        "goals": [
            goal("the server starts a new worker, which serves", replaced_s is not None, f"{replaced_s:.1f} s after the kill" if replaced_s else "no new worker"),
            goal("only requests on the killed worker's connections fail, none later than 1 s after", not late and len(bad) <= held,
                 f"{len(bad)} failed of {len(records)}; the killed worker held {held} connections, {len(in_flight)} requests were in flight"),
        ],
    }  # fmt: skip


# ------------------------------------------------------------------------------------------------ hang-ups


def loop_tasks(url: str) -> dict[str, float]:
    """``zoo_event_loop_tasks`` per worker pid, from ``/metrics``."""
    import httpx

    out = {}
    for line in httpx.get(url + "/metrics", timeout=30).text.splitlines():
        if line.startswith("zoo_event_loop_tasks{"):
            labels, value = line.rsplit(" ", 1)
            pid = labels.split('pid="', 1)[1].split('"', 1)[0]
            out[pid] = float(value)
    return out


def server_errors(url: str) -> float:
    """The 5xx answers BentoML has counted (``*_request_total`` by ``http_response_code``), from ``/metrics``."""
    import httpx

    lines = httpx.get(url + "/metrics", timeout=30).text.splitlines()
    return sum(float(x.rsplit(" ", 1)[1]) for x in lines if "_request_total{" in x and 'http_response_code="5' in x)


def resources(server: Server) -> dict[str, dict[str, float]]:
    """Per worker: open file descriptors, TCP connections not closed, RSS (MB), event-loop tasks."""
    import psutil

    tasks = loop_tasks(server.url)
    time.sleep(0.5)  # the scrape's own connection closes
    out = {}
    for p in workers(server.proc.pid):
        conns = [c for c in p.net_connections("tcp") if c.status in (psutil.CONN_ESTABLISHED, psutil.CONN_CLOSE_WAIT)]
        out[str(p.pid)] = {"fds": p.num_fds(), "connections": len(conns), "rss_mb": round(p.memory_info().rss / 2**20, 1), "tasks": tasks.get(str(p.pid), -1)}
    return out


def hang_up(host: str, port: int, api: Api, mid_upload: bool) -> None:
    """Send ``api``'s request and close the socket: after part of the body, or right after all of it."""
    with socket.create_connection((host, port), timeout=10) as s:
        body = api.body if not mid_upload else api.body + b"\0" * 200_000  # declared larger than what is sent
        head = f"POST {api.route} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {api.ctype}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        s.sendall(head + (body[: len(body) // 3] if mid_upload else body))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST, as a dropped client


async def settle(server: Server, apis: list[Api]) -> None:
    """Let the server finish what it holds, then touch every worker so each reports its tasks."""
    import httpx

    await asyncio.to_thread(server.settle, 120)
    rate = next(a for a in apis if a.name == "rate")
    async with httpx.AsyncClient(timeout=30) as client:
        for _ in range(50):  # new connections spread over the workers
            await client.post(server.url + rate.route, content=rate.body, headers={"content-type": rate.ctype, "connection": "close"})
    await asyncio.sleep(6)  # the task gauge is sampled every 5 s


async def warm_up(server: Server, apis: list[Api], rounds: int = 20) -> None:
    """Complete requests of every API over several connections, so each worker's models and arenas have their working size."""
    import httpx

    async def one(seed: int) -> None:
        async with httpx.AsyncClient(timeout=60) as client:
            for api in apis * rounds:
                await client.post(server.url + api.route, content=api.body, headers={"content-type": api.ctype})

    await asyncio.gather(*(one(seed) for seed in range(4)))


async def hang_ups(server: Server, apis: list[Api], n: int, n_rounds: int = 3) -> dict[str, Any]:
    heavy = [a for a in apis if a.name in ("classify", "segment", "superres", "sentiment")]
    await warm_up(server, apis)
    await settle(server, apis)
    before = resources(server)
    errors_before = server_errors(server.url)
    port = int(server.url.rsplit(":", 1)[1])
    rounds = [before]
    for _ in range(n_rounds):  # the first rounds grow ONNX Runtime's arenas and malloc's to what the pile-ups need; a leak grows in every one
        for i in range(n):
            for mid_upload in (True, False):
                await asyncio.to_thread(hang_up, "127.0.0.1", port, heavy[i % len(heavy)], mid_upload)
        await settle(server, apis)
        rounds.append(resources(server))
    after = rounds[-1]
    errors = server_errors(server.url) - errors_before
    same = all(sorted(r) == sorted(before) for r in rounds)
    rows = {pid: {k: tuple(r[pid][k] for r in rounds) for k in before[pid]} for pid in before if all(pid in r for r in rounds)}
    fds_ok = same and all(v[-1] - v[0] <= 4 for r in rows.values() for v in [r["fds"]])
    conns_ok = same and all(v[-1] <= v[0] + 1 for r in rows.values() for v in [r["connections"]])
    tasks_ok = same and all(0 <= v[-1] - v[0] <= 2 and v[0] >= 0 for r in rows.values() for v in [r["tasks"]])
    rss_ok = same and all(v[-1] <= 1.05 * v[-2] for r in rows.values() for v in [r["rss_mb"]])

    def figure(key: str) -> str:
        return "; ".join(" -> ".join(f"{v:g}" for v in r[key]) for r in rows.values())

    return {
        "hang_ups": 2 * n * n_rounds, "rounds": rounds,
        "goals": [
            goal("the same workers before and after", same, f"{len(before)} -> {len(after)} workers"),
            goal("open file descriptors per worker back to where they were (at most 4 more)", fds_ok, figure("fds")),
            goal("no TCP connection left open per worker (established or half-closed; at most 1 more)", conns_ok, figure("connections")),
            goal("event-loop tasks per worker back to where they were (at most 2 more)", tasks_ok, figure("tasks")),
            goal(f"RSS per worker: round {n_rounds} of hang-ups adds under 5%", rss_ok, figure("rss_mb") + f" MB (before, then after each of {n_rounds} rounds)"),
            goal("a client that hangs up is not a server error (5xx in BentoML's request counts)", errors == 0, f"{errors:g} answers counted as 5xx"),
        ],
    }  # fmt: skip


# ------------------------------------------------------------------------------------------------ main


def markdown(data: dict[str, Any]) -> str:
    lines = ["# Chaos: faults under load", "", stamp_markdown(data["stamp"]), "| scenario | goal | met | figure |", "| --- | --- | --- | --- |"]
    for name, result in data["scenarios"].items():
        if "skipped" in result:
            lines.append(f"| {name} | skipped | - | {result['skipped']} |")
        for g in result.get("goals", []):
            lines.append(f"| {name} | {g['goal']} | {'yes' if g['met'] else '**no**'} | {g['figure']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    from bench import chaos_registry, chaos_retrain

    wanted = env_list("CHAOS_SCENARIOS", SCENARIOS)
    unknown = set(wanted) - set(SCENARIOS)
    if unknown:
        raise SystemExit(f"CHAOS_SCENARIOS: unknown {sorted(unknown)}; known: {', '.join(SCENARIOS)}")
    clients, n_hangups = env_int("CHAOS_CLIENTS", 8), env_int("CHAOS_HANGUPS", 500)
    st = settings()
    db = Path(st.registry_uri.removeprefix("sqlite:///"))
    if not st.registry_uri.startswith("sqlite:///") or not db.is_file():
        raise SystemExit(f"bench/chaos.py runs on a copy of the embedded registry make demo leaves; none at {st.registry_uri}")
    results: dict[str, Any] = {}
    started = stamp()  # before the scenarios set their own variables
    stores = (st.artifact_root, st.checkpoints)  # the retrains on the registry's copy write here: removed afterwards
    before = set().union(*(new_folders(r) for r in stores))
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        shutil.copy(db, tmp / "mlflow.db")
        uri = f"sqlite:///{tmp / 'mlflow.db'}"
        os.environ.update({"MLFLOW_TRACKING_URI": uri, "MLFLOW_REGISTRY_URI": uri})
        runs: dict[str, Callable[[], Any]] = {}
        if {"worker-kill", "hang-ups"} & set(wanted):
            champs = champions(sorted(WEIGHTS.keys() - {"rate"}))
            apis = build_apis(champs)
            os.environ["BENCH_BENTO_ENV"] = "ZOO_WORKERS=2"
            with bento_server(sorted(champs), tmp / "bentoml.log") as server:
                if "hang-ups" in wanted:
                    results["hang-ups"] = run_one("hang-ups", lambda: asyncio.run(hang_ups(server, apis, n_hangups)))
                if "worker-kill" in wanted:
                    results["worker-kill"] = run_one("worker-kill", lambda: asyncio.run(worker_kill(server, apis, clients)))
        if "registry-restart" in wanted:
            runs["registry-restart"] = lambda: asyncio.run(chaos_registry.registry_restart(tmp, clients))
        if "retrain-kill" in wanted:
            runs["retrain-kill"] = lambda: chaos_retrain.retrain_kill(tmp)
        if "disk-full" in wanted:
            runs["disk-full"] = lambda: chaos_retrain.disk_full(tmp)
        try:
            for name, fn in runs.items():
                results[name] = run_one(name, fn)
        finally:
            remove_new(before, set().union(*(new_folders(r) for r in stores)))
    data = {"stamp": started, "clients": clients, "scenarios": {k: results[k] for k in SCENARIOS if k in results}}
    _, md = write_results("chaos", data, markdown(data))
    print(md.read_text())
    missed = [f"{k}: {g['goal']}" for k, r in results.items() for g in r.get("goals", []) if not g["met"]]
    if missed:
        raise SystemExit("chaos goals not met:\n  " + "\n  ".join(missed))


def new_folders(root: Path, depth: int = 3) -> set[Path]:
    """Every folder under ``root`` down to ``depth`` levels."""
    found: set[Path] = set()
    level = [root] if root.is_dir() else []
    for _ in range(depth):
        level = [c for f in level for c in f.iterdir() if c.is_dir()]
        found.update(level)
    return found


def remove_new(before: set[Path], after: set[Path]) -> list[Path]:
    """Remove the folders that appeared (the top-most of each new tree)."""
    new = after - before
    top = sorted(f for f in new if f.parent not in new)
    for folder in top:
        shutil.rmtree(folder, ignore_errors=True)
    return top


def run_one(name: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    print(f"chaos: {name} ...", flush=True)
    t0 = time.monotonic()
    result = fn()
    result["seconds"] = round(time.monotonic() - t0, 1)
    for g in result.get("goals", []):
        print(f"  {'ok ' if g['met'] else 'NO '} {g['goal']}: {g['figure']}", flush=True)
    if "skipped" in result:
        print(f"  skipped: {result['skipped']}", flush=True)
    return result


if __name__ == "__main__":
    main()
