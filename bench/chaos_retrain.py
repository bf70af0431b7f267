"""Chaos scenarios of retraining and of a full disk (run from :mod:`bench.chaos`).

- ``retrain-kill``: ``zoo train recommend --config tiny`` killed with SIGKILL during training,
  during export and during registration (``ZOO_FAILPOINTS``, :mod:`models.faults`); after each,
  no alias has moved and nothing new is served; the next run clears up after the killed one,
  trains (it does not skip) and registers one version; the run after that skips.
- ``disk-full``: ``ZOO_HOME`` on a small tmpfs that is full, for a retrain (a clear error, the
  registry unchanged) and for the service's download of a newly promoted version (the old one
  keeps serving, no request fails; once there is room again the new version is served).
  Needs ``mount -t tmpfs`` (root); skipped, and said so, where it is not allowed.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import champions, settings

POINTS = ("train", "export", "register")


def zoo(*args: str, env: dict[str, str] | None = None, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """Run ``zoo``; its output goes through files (a killed process's children may hold a pipe open for ever)."""
    import tempfile

    exe = str(Path(sys.executable).with_name("zoo"))
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        done = subprocess.run([exe, *args], env={**os.environ, **(env or {})}, stdout=out, stderr=err, timeout=timeout, check=False)
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(done.args, done.returncode, out.read().decode(errors="replace"), err.read().decode(errors="replace"))


def last_json(text: str) -> dict[str, Any]:
    """The JSON object ``zoo ... --json`` printed last (log lines may come before it)."""
    start = 0 if text.startswith("{") else text.rfind("\n{\n") + 1
    try:
        return json.loads(text[start:]) if start or text.startswith("{") else {}
    except ValueError:
        return {}


def said(got: subprocess.CompletedProcess[str], words: str) -> list[str]:
    return [ln.strip() for ln in (got.stdout + got.stderr).splitlines() if words in ln]


def registry_state(uri: str, task: str) -> dict[str, Any]:
    """Versions (with their runs) and aliases of ``task``."""
    from mlflow import MlflowClient

    c = MlflowClient(uri, uri)
    versions = {str(v.version): v.run_id for v in c.search_model_versions(f"name='{task}'")}
    return {"versions": versions, "aliases": {k: str(v) for k, v in sorted(c.get_registered_model(task).aliases.items())}}


def runs_since(uri: str, since_ms: int) -> list[str]:
    """The status of every MLflow run started since ``since_ms``, oldest first."""
    from mlflow import MlflowClient

    c = MlflowClient(uri, uri)
    ids = [e.experiment_id for e in c.search_experiments()]
    runs = c.search_runs(ids, f"attributes.start_time >= {since_ms}", order_by=["attributes.start_time ASC"])
    return [r.info.status for r in runs]


def goal(text: str, met: bool, figure: str = "") -> dict[str, Any]:
    return {"goal": text, "met": bool(met), "figure": figure}


def retrain_kill(tmp: Path, task: str = "recommend") -> dict[str, Any]:
    uri = os.environ["MLFLOW_TRACKING_URI"]
    start = registry_state(uri, task)
    started = int(time.time() * 1000)
    kills = []
    for point in POINTS:
        before = registry_state(uri, task)
        got = zoo("train", task, "--config", "tiny", env={"ZOO_FAILPOINTS": point})
        after = registry_state(uri, task)
        new = sorted(set(after["versions"]) - set(before["versions"]), key=int)
        kills.append({"point": point, "returncode": got.returncode, "aliases_same": after["aliases"] == before["aliases"], "versions_left": new,
                      "recovered": said(got, "died without finishing")})  # fmt: skip
    clean = zoo("train", task, "--config", "tiny", "--json")
    after = registry_state(uri, task)
    result = last_json(clean.stdout)
    again = zoo("train", task, "--config", "tiny", "--json")
    skipped = last_json(again.stdout).get("skipped")
    new_versions = sorted(set(after["versions"]) - set(start["versions"]), key=int)
    statuses = runs_since(uri, started)
    left = [k for k in kills if k["versions_left"]]
    return {
        "kills": kills, "clean_run": {"returncode": clean.returncode, "version": result.get("version"), "skipped": result.get("skipped"),
                                     "recovery_message": said(clean, "died without finishing")},
        "second_run_skipped": skipped, "versions_before": start["versions"], "versions_after": after["versions"], "aliases_after": after["aliases"],
        "run_statuses": statuses,
        "goals": [
            goal("each kill ends the retrain (SIGKILL)", all(k["returncode"] == -9 for k in kills), ", ".join(f"{k['point']}: {k['returncode']}" for k in kills)),
            goal("no alias moved by a killed retrain", all(k["aliases_same"] for k in kills), json.dumps(start["aliases"])),
            goal("a kill before registration leaves no version", all(not k["versions_left"] for k in kills if k["point"] != "register"),
                 "; ".join(f"{k['point']}: {k['versions_left'] or 'none'}" for k in kills)),
            goal("the next run clears up, trains (no skip) and registers one version as challenger",
                 clean.returncode == 0 and result.get("skipped") is False and new_versions == [str(result.get("version"))]
                 and after["aliases"].get("challenger") == str(result.get("version")) and after["aliases"].get("champion") == start["aliases"].get("champion"),
                 f"rc {clean.returncode}; new versions {new_versions}; aliases {json.dumps(after['aliases'])}; left by kills then deleted: {[v for k in left for v in k['versions_left']]}"),
            goal("the run after it skips (same data and code)", skipped is True, f"skipped={skipped}"),
            goal("the killed runs are marked KILLED, the clean one FINISHED", statuses == ["KILLED"] * len(POINTS) + ["FINISHED"], ", ".join(statuses)),
            goal("each run after a kill says what it cleared up", all(k["recovered"] for k in kills[1:]) and bool(said(clean, "died without finishing")),
                 (said(clean, "died without finishing") or ["nothing said"])[0][-300:]),
        ],
    }  # fmt: skip


# ------------------------------------------------------------------------------------------------ disk-full


def mount_tmpfs(path: Path, size_mb: int) -> str | None:
    """Mount a ``size_mb`` tmpfs at ``path``; the reason when that is not allowed here."""
    path.mkdir(parents=True, exist_ok=True)
    got = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(path)], capture_output=True, text=True, check=False)
    return None if got.returncode == 0 else f"cannot mount a tmpfs here ({(got.stderr or got.stdout).strip()}); run make chaos as root"


def fill(path: Path, leave_bytes: int = 0) -> Path:
    """Fill the file system of ``path`` up to ``leave_bytes`` free; returns the filler file."""
    filler = path / "filler"
    free = shutil.disk_usage(path).free - leave_bytes
    with filler.open("wb") as out:
        chunk = b"\0" * 2**20
        while free > 0:
            try:
                free -= out.write(chunk[: min(len(chunk), free)])
            except OSError:
                break
    return filler


def disk_full(tmp: Path, task: str = "recommend") -> dict[str, Any]:
    mnt = tmp / "small-disk"
    why = mount_tmpfs(mnt, 128)
    if why:
        return {"skipped": why}
    try:
        retrain = _retrain_on_full_disk(mnt, task)
        download = asyncio.run(_download_on_full_disk(tmp, mnt, task))
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
    return {"retrain": retrain, "download": download, "goals": retrain.pop("goals") + download.pop("goals")}


def _retrain_on_full_disk(mnt: Path, task: str) -> dict[str, Any]:
    """A retrain whose ``ZOO_HOME`` (a copy of the demo's: the registry's database, DVC's cache and remote, Prefect's home) is on a full disk."""
    demo = settings().home
    home = mnt / "home"
    skip = ("checkpoints", "cache", "mlartifacts", "bentoml", "logs")  # the registry names its artifacts by absolute path: they stay where they are
    shutil.copytree(demo, home, ignore=lambda folder, names: [n for n in names if Path(folder) == demo and (n in skip or n.startswith("tmp"))])
    shutil.copy(Path(os.environ["MLFLOW_TRACKING_URI"].removeprefix("sqlite:///")), home / "mlflow.db")
    uri = f"sqlite:///{home / 'mlflow.db'}"
    env = {"ZOO_HOME": str(home), "MLFLOW_TRACKING_URI": uri, "MLFLOW_REGISTRY_URI": uri, "PREFECT_HOME": str(home / "prefect")}
    before = registry_state(uri, task)
    filler = fill(mnt)
    got = zoo("train", task, "--config", "tiny", "--force", env=env)
    filler.unlink()
    after = registry_state(uri, task)
    message = ([ln for ln in got.stderr.splitlines() if ln.startswith("error:")] or [got.stderr.strip()[-300:]])[-1]
    again = zoo("train", task, "--config", "tiny", "--force", "--json", env=env)
    later = registry_state(uri, task)
    new = sorted(set(later["versions"]) - set(after["versions"]), key=int)
    return {
        "returncode": got.returncode, "message": message, "registry_same": after == before, "retry_returncode": again.returncode, "retry_new_versions": new,
        "goals": [
            goal("a retrain on a full ZOO_HOME fails with a clear error", got.returncode not in (0, -9) and "out of disk space" in message, f"rc {got.returncode}: {message[:300]}"),
            goal("the registry is untouched by it", after == before, json.dumps(after["aliases"])),
            goal("with room again, the same retrain registers a version", again.returncode == 0 and len(new) == 1, f"rc {again.returncode}, new versions {new}"),
        ],
    }  # fmt: skip


async def _download_on_full_disk(tmp: Path, mnt: Path, task: str) -> dict[str, Any]:
    """The service's ``ZOO_HOME`` is on the small disk, full when a new champion is to be downloaded."""
    import httpx
    from mlflow import MlflowClient

    from bench.chaos import failed, kinds, load, served_after
    from bench.http_level import bento_server, build_apis
    from bench.soak import second_version

    uri = os.environ["MLFLOW_TRACKING_URI"]
    old, new = second_version(uri)
    c = MlflowClient(uri, uri)
    apis = [a for a in build_apis(champions([task])) if a.name in ("rate", "recommend")]
    os.environ["BENCH_BENTO_ENV"] = f"ZOO_HOME={mnt / 'service-home'},ZOO_POLL_SECONDS=0.5"
    log = tmp / "disk-full-bentoml.log"
    with bento_server([task], log) as server:
        stop, records = asyncio.Event(), []
        loaders = [asyncio.create_task(load(server.url, apis, stop, records, seed)) for seed in range(4)]
        await asyncio.sleep(5)
        filler = await asyncio.to_thread(fill, mnt)
        promoted_at = time.monotonic()
        await asyncio.to_thread(c.set_registered_model_alias, task, "champion", new)
        await asyncio.sleep(15)
        async with httpx.AsyncClient(timeout=30) as client:
            ready = (await client.get(server.url + "/readyz")).status_code
            metrics = (await client.get(server.url + "/metrics")).text
        while_full = [r for r in records if r[0] > promoted_at]
        served_while_full = sorted({r[4] for r in while_full})
        filler.unlink()
        took = await served_after(records, new, time.monotonic(), 60)
        stop.set()
        await asyncio.gather(*loaders)
    c.set_registered_model_alias(task, "champion", old)
    logged = [m.group(0) for m in re.finditer(r"not loading \S+ version \S+: out of disk space under ZOO_HOME \([^)]*\)", log.read_text(errors="replace"))]
    failures = [ln for ln in metrics.splitlines() if ln.startswith(f'zoo_model_load_failures_total{{task="{task}"}}')]
    bad = failed(records)
    return {
        "requests": len(records), "failed": len(bad), "failures": kinds(records), "served_while_full": served_while_full, "ready_while_full": ready, "log_lines": logged[:3], "load_failures": failures,
        "goals": [
            goal("with the disk full, the old version keeps serving and the service stays ready", served_while_full == [old] and ready == 200,
                 f"served {served_while_full} with champion -> {new}; /readyz {ready}"),
            goal("no request fails", not bad, f"{len(bad)} failed of {len(records)}"),
            goal("the failed download is logged and counted", bool(logged) and bool(failures), f"{len(logged)} times '{(logged[:1] or ['nothing logged'])[0]}'; " + "; ".join(failures)),
            goal("with room again, the new version is served", took is not None, f"{took:.1f} s after the space was freed" if took else "never"),
        ],
    }  # fmt: skip
