"""Chaos scenario ``registry-restart`` (run from :mod:`bench.chaos`).

The service follows a real ``mlflow server`` on PostgreSQL, which is stopped and started again
under load: no request may fail, and a promotion made after it came back must be served.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.chaos import PG, failed, goal, kinds, load, served_after
from bench.common import champions, settings
from bench.http_level import bento_server, build_apis, free_port, wait_http


def start_mlflow(db_uri: str, artifacts: Path, port: int, log: Path) -> subprocess.Popen:
    mlflow = str(Path(sys.executable).with_name("mlflow"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    cmd = [mlflow, "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1", "--backend-store-uri", db_uri,
           "--serve-artifacts", "--artifacts-destination", str(artifacts)]  # fmt: skip
    with log.open("ab") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    wait_http(f"http://127.0.0.1:{port}/health", 120, proc)
    return proc


def stop_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


async def registry_restart(tmp: Path, clients: int, down_s: float = 20.0) -> dict[str, Any]:
    """The service follows an ``mlflow server`` on PostgreSQL, which goes away for ``down_s`` under load."""
    import psycopg
    from mlflow import MlflowClient

    from models.store import writing
    from models.store.names import CHAMPION

    db = f"zoo_chaos_{os.getpid()}"
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')
    port, log = free_port(), tmp / "mlflow-server.log"
    proc = start_mlflow(f"{PG}/{db}", tmp / "server-artifacts", port, log)
    url = f"http://127.0.0.1:{port}"
    try:
        dev = settings()
        from dataclasses import replace

        to_server = replace(dev, prod_registry_uri=url)
        champ = champions(["recommend"])["recommend"]
        name, first = writing.copy_to_prod(to_server, "recommend", champ.version)
        _, second = writing.copy_to_prod(to_server, "recommend", champ.version)
        server_client = MlflowClient(url, url)
        server_client.set_registered_model_alias(name, CHAMPION, first)
        env = {"MLFLOW_TRACKING_URI": url, "MLFLOW_REGISTRY_URI": url, "ZOO_SERVE_REGISTRY": "prod", "ZOO_TASKS": "recommend",
               "ZOO_POLL_SECONDS": "0.5", "ZOO_HOME": str(tmp / "service-home")}  # fmt: skip
        os.environ["BENCH_BENTO_ENV"] = ",".join(f"{k}={v}" for k, v in env.items())
        apis = [a for a in build_apis({"recommend": champ}) if a.name in ("rate", "recommend")]
        with bento_server(["recommend"], tmp / "registry-restart-bentoml.log") as server:
            stop, records = asyncio.Event(), []
            loaders = [asyncio.create_task(load(server.url, apis, stop, records, seed)) for seed in range(clients)]
            await asyncio.sleep(10)
            down_at = time.monotonic()
            await asyncio.to_thread(stop_group, proc)
            await asyncio.sleep(down_s)
            proc = await asyncio.to_thread(start_mlflow, f"{PG}/{db}", tmp / "server-artifacts", port, log)
            up_at = time.monotonic()
            await asyncio.to_thread(server_client.set_registered_model_alias, name, CHAMPION, second)
            promoted_at = time.monotonic()
            took = await served_after(records, second, promoted_at, 120)
            await asyncio.sleep(5)
            stop.set()
            await asyncio.gather(*loaders)
    finally:
        stop_group(proc)
        with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    bad = failed(records)
    during = [r for r in records if down_at <= r[0] <= up_at]
    return {
        "requests": len(records), "during_outage": len(during), "failed": len(bad), "failures": kinds(records), "down_s": round(up_at - down_at, 1),
        "failed_at_s": {"from_stop": [round(r[0] - down_at, 1) for r in bad[:1] + bad[-1:]], "restart_done_s": round(up_at - down_at, 1), "promoted_s": round(promoted_at - down_at, 1)},
        "promoted_version": second, "served_after_s": took,
        "goals": [
            goal("no failed request while the registry is down and after", not bad, f"{len(bad)} failed of {len(records)} ({len(during)} while it was down, {up_at - down_at:.0f} s)"),
            goal("a promotion after the restart is served", took is not None, f"version {second} served {took:.1f} s after the alias moved" if took else "never served"),
        ],
    }  # fmt: skip
