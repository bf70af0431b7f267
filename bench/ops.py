"""The ops commands' wall time: ``zoo models --json``, ``zoo history`` and ``zoo rollback``, each a fresh process.

Each command runs ``BENCH_OPS_RUNS`` (7) times, interleaved, on a copy of the
registry that ``make demo`` left (the copy takes the rollbacks), two ways: as
shipped, and with every registry call sent through MLflow's client (what the
commands did before ``models/store/light``) as the baseline. Beside them: a bare
``python -c pass`` and ``zoo --help``, the floor any command pays.

    python bench/ops.py     # after make demo; writes bench/results/ops.{json,md}
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import env_int, fmt, settings, stamp, stamp_markdown, write_results  # noqa: E402

# Runs the CLI in this process, optionally with every store replaced by MLflow's client.
RUNNER = """
import runpy, sys
if sys.argv[1] == "mlflow":
    import models.store.light as light
    from models.store.light.client import ClientStore
    light.connect = lambda settings, uri: ClientStore(settings, uri)
sys.argv = ["zoo", *sys.argv[2:]]
runpy.run_module("pipelines.cli", run_name="__main__")
"""


def seconds(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    took = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[3:])} failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return took


def main() -> None:
    runs = env_int("BENCH_OPS_RUNS", 7)
    st = settings()
    db = Path(st.registry_uri.removeprefix("sqlite:///"))
    if not st.registry_uri.startswith("sqlite:///") or not db.is_file():
        raise SystemExit(f"bench/ops.py measures the embedded registry that make demo leaves; none at {st.registry_uri}")
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "mlflow.db"
        shutil.copy(db, copy)
        uri = f"sqlite:///{copy}"
        env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "MLFLOW_REGISTRY_URI": uri}
        # A champion to roll back to: recommend's own version, recorded as its previous champion.
        prep = (
            "from models.settings import Settings; from models.store import light\n"
            "s = Settings.from_env(); store = light.connect(s, s.registry_uri)\n"
            "v = store.by_alias('recommend', 'champion').version\n"
            "store.set_tags('recommend', v, {'zoo.previous_champion': v})\n"
        )
        subprocess.run([sys.executable, "-c", prep], env=env, check=True, timeout=120)
        commands = {
            "models --json": ["models", "--json"],
            "history recommend --json": ["history", "recommend", "--json"],
            "rollback recommend": ["rollback", "recommend", "--reason", "bench/ops.py"],
        }
        floors = {"python -c pass": [sys.executable, "-c", "pass"], "zoo --help": [sys.executable, "-c", RUNNER, "light", "--help"]}
        times: dict[str, list[float]] = {k: [] for k in floors}
        for name in commands:
            times[f"{name} (light)"], times[f"{name} (MLflow client)"] = [], []
        for _ in range(runs):
            for name, cmd in floors.items():
                times[name].append(seconds(cmd, env))
            for name, args in commands.items():
                times[f"{name} (light)"].append(seconds([sys.executable, "-c", RUNNER, "light", *args], env))
                times[f"{name} (MLflow client)"].append(seconds([sys.executable, "-c", RUNNER, "mlflow", *args], env))
    medians = {k: statistics.median(v) for k, v in times.items()}
    result: dict[str, Any] = {"stamp": stamp(), "runs": runs, "seconds": times, "median_seconds": medians}
    lines = [
        "# Ops commands: wall time of one `zoo` process",
        "",
        stamp_markdown(result["stamp"]),
        f"Median of {runs} interleaved runs each, on a copy of the registry `make demo` left (SQLite). "
        "Baseline: the same command with every registry call through MLflow's client.",
        "",
        "| command | light (s) | MLflow client (s) | speed-up |",
        "| --- | --- | --- | --- |",
    ]
    for name in commands:
        light_s, client_s = medians[f"{name} (light)"], medians[f"{name} (MLflow client)"]
        lines.append(f"| `zoo {name}` | {fmt(light_s)} | {fmt(client_s)} | {fmt(client_s / light_s)}x |")
    lines += ["", "| floor | median (s) |", "| --- | --- |"]
    lines += [f"| `{name}` | {fmt(medians[name])} |" for name in floors]
    _, md_path = write_results("ops", result, "\n".join(lines) + "\n")
    print(md_path.read_text())


if __name__ == "__main__":
    main()
