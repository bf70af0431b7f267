"""``make bench``: the model-level, HTTP-level and shadow benchmarks, then a summary against the goals.

Each level runs as its own process (the HTTP level starts one server at a
time); the summary, ``bench/results/summary.md`` (and ``.json``), puts the two
tables side by side and says, goal by goal, whether it is met or what was
measured instead. Knobs: see ``bench/common.py``; ``BENCH_LEVELS`` (default
``model,http,shadow``) picks the levels (``shadow``: ``bench/shadow_level.py``, in a project of its own).

    python bench/run.py
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import RESULTS, ROOT, champions, env_list, fmt, stamp, stamp_markdown, tasks_wanted, write_results  # noqa: E402

GOAL_SPEEDUP = 1.5
GOAL_LIMIT_SHARE = 0.8


def goal_lines(model: dict[str, Any] | None, http: dict[str, Any] | None) -> tuple[list[str], dict[str, Any]]:
    lines: list[str] = []
    verdict: dict[str, Any] = {}
    if model:
        short = [(r["task"], r["batches"]["1"]["speedup"]["median"]) for r in model["tasks"] if r["batches"]["1"]["speedup"]["median"] < GOAL_SPEEDUP]
        all_b1 = ", ".join(f"{r['task']} {r['batches']['1']['speedup']['median']:.2f}x" for r in model["tasks"])
        verdict["onnxruntime_1.5x_at_batch_1"] = not short
        lines.append(
            f"- **ONNX Runtime >= 1.5x PyTorch eager at batch 1 on every task: {'met' if not short else 'not met'}** "
            f"(speed-up at batch 1: {all_b1})"
            + ("" if not short else f"; below 1.5x: {', '.join(f'{t} {s:.2f}x' for t, s in short)}")
        )
        for r in model["tasks"]:
            q = r["batches"]["1"].get("int8")
            if q:
                lines.append(
                    f"  - {r['task']}: its champion v{r['version']} is a float model; quantized to INT8 as the export step "
                    f"does with ZOO_QUANTIZE=1, it runs at {q['speedup']['median']:.2f}x PyTorch eager at batch 1"
                )
    if http and http["goals"]:  # no goals when the Bento was not among BENCH_SERVERS
        goals = http["goals"]
        tp_fail = [g for g in goals if not g["throughput_met"]]
        p99_fail = [g for g in goals if not g["p99_met"]]
        err_fail = [g for g in goals if not g["errors_met"]]
        met = not (tp_fail or p99_fail or err_fail)
        verdict["beats_better_peer"] = met
        tp = ", ".join(f"{g['api']} c{g['concurrency']} {g['throughput_ratio']:.2f}x of {g['better_peer']}" for g in tp_fail)
        p99 = ", ".join(f"{g['api']} c{g['concurrency']} {fmt(g['bentoml_p99_ms'])} vs {fmt(g['peer_p99_ms'])} ms" for g in p99_fail)
        err = ", ".join(f"{g['api']} c{g['concurrency']}: {g['bentoml_errors']}" for g in err_fail)
        why = (
            f": throughput short in {len(tp_fail)} of {len(goals)} cases ({tp}); p99 worse in {len(p99_fail)} ({p99}); "
            f"errors in {len(err_fail)} ({err})"
        )
        lines.append(
            "- **Against the peers (throughput >= the better of MLflow and FastAPI, p99 no worse, zero errors) "
            f"at every API and concurrency: {'met' if met else 'not met'}**" + ("" if met else why)
        )
        small = [g for g in goals if g["api"] in ("rate", "sales") and "mlflow_ratio" in g]
        if small:
            lines.append(
                "- Small id and tabular APIs against `mlflow models serve` (aim 1.5x): "
                + ", ".join(f"{g['api']} c{g['concurrency']} {g['mlflow_ratio']:.2f}x" for g in small)
            )
        for key, name, goal, figure in (
            (
                "limit_met",
                "compute_bound_80pct_of_limit",
                f"Compute-bound APIs at c{max(http['concurrency'])} >= 80% of ONNX Runtime's own best-batch throughput",
                lambda g: f"{g['api']} {100 * g['limit_share']:.0f}% of {fmt(g['limit_rps'])} req/s",
            ),
            (
                "p50_met",
                "c1_p50_vs_mlflow",
                "At concurrency 1, p50 no worse than `mlflow models serve`'s",
                lambda g: f"{g['api']} {fmt(g['bentoml_p50_ms'])} vs {fmt(g['mlflow_p50_ms'])} ms",
            ),
        ):
            lines += _goal_line(verdict, [g for g in goals if key in g], key, name, goal, figure)
    return lines, verdict


def _goal_line(
    verdict: dict[str, Any], rows: list[dict[str, Any]], key: str, name: str, goal: str, figure: Callable[[dict[str, Any]], str]
) -> list[str]:
    """One goal's line, with each row's figure; records the verdict under ``name`` (nothing when no row applies)."""
    if not rows:
        return []
    ok = all(g[key] for g in rows)
    verdict[name] = ok
    return [f"- **{goal}: {'met' if ok else 'not met'}** (" + ", ".join(figure(g) for g in rows) + ")"]


def body(text: str) -> str:
    """A level's Markdown without its title and stamp (the summary has one stamp)."""
    out = text.split("\n")
    start = next((i for i, ln in enumerate(out) if ln and not ln.startswith(("#", "- date", "- machine", "- libraries", "- settings"))), 0)
    return "\n".join(out[start:])


def main() -> int:
    levels = env_list("BENCH_LEVELS", ("model", "http", "shadow"))
    champions(tasks_wanted())  # no demo state: say so before anything runs
    for level in levels:
        script = ROOT / "bench" / f"{level}_level.py"
        print(f"== {script.relative_to(ROOT)}", flush=True)
        rc = subprocess.call([sys.executable, str(script)], cwd=ROOT)
        if rc != 0:
            print(f"{script.name} failed with exit status {rc}", file=sys.stderr)
            return rc
    # The latest result of each level, whether run now or before (BENCH_LEVELS=http re-runs one level).
    model = json.loads((RESULTS / "model_level.json").read_text()) if (RESULTS / "model_level.json").is_file() else None
    http = json.loads((RESULTS / "http_level.json").read_text()) if (RESULTS / "http_level.json").is_file() else None
    lines, verdict = goal_lines(model, http)
    st = stamp()
    md = ["# course-zoo serving benchmark (`make bench`)", "", stamp_markdown(st), "## Goals", "", *lines, ""]
    if model:
        md += ["## Model level", "", body((RESULTS / "model_level.md").read_text())]
    if http:
        md += ["## HTTP level", "", body((RESULTS / "http_level.md").read_text())]
    if (RESULTS / "shadow.md").is_file():
        md += ["## Shadow traffic", "", body((RESULTS / "shadow.md").read_text())]
    write_results("summary", {"stamp": st, "goals": verdict, "goal_lines": lines}, "\n".join(md))
    print("\n".join(md))
    print(f"wrote {RESULTS / 'summary.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
