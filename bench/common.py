"""What the model-level and HTTP-level benchmarks share.

The machine and library stamp, the registry's champions (ONNX + spec, sha256
checked the way the services check them), the PyTorch network rebuilt from the
registered run, the inputs every side gets, and medians with their spread.

Knobs (environment variables; defaults in brackets):

``BENCH_TASKS``             tasks to measure, comma-separated [all six]
``BENCH_ROUNDS``            interleaved rounds at model level [7]
``BENCH_MIN_SECONDS``       time per measurement at model level [0.4]
``BENCH_MATMUL_N``          sizes of the peak matrix products [512,1024,2048]
``BENCH_HTTP_ROUNDS``       rounds at HTTP level; each round starts every server once [2]
``BENCH_HTTP_SECONDS``      seconds per wrk run [5]
``BENCH_CONCURRENCY``       HTTP concurrencies [1,8,32]
``BENCH_SERVERS``           HTTP servers [bentoml,mlflow,fastapi]
``BENCH_RESULT_SUFFIX``     model and HTTP level: write ``model_level<suffix>``, ``http_level<suffix>.{json,md}`` (a side run, e.g. ``-passive``) [none]
``BENCH_BENTO_ENV``         extra variables for the BentoML service only, e.g. ``ZOO_WORKERS=1`` [none]
``BENCH_PEER_WORKERS``      worker processes of ``mlflow models serve`` and the FastAPI app [as many as the Bento]
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "bench" / "results"
ALL_TASKS = ("classify", "recommend", "sales", "segment", "sentiment", "superres")


class NoDemoState(SystemExit):
    """No champion in the registry: the benchmark has nothing to measure."""


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


def env_list(name: str, default: tuple[str, ...] | list[str]) -> list[str]:
    raw = os.environ.get(name, "").strip()
    return [x.strip() for x in raw.split(",") if x.strip()] if raw else list(default)


def tasks_wanted() -> list[str]:
    return env_list("BENCH_TASKS", ALL_TASKS)


# ---------------------------------------------------------------------------------------------------- stamp


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def machine() -> dict[str, Any]:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": _cpu_model(),
        "cores": cores,
        "memory_gib": _mem_gib(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("torch", "onnxruntime", "onnx", "numpy", "bentoml", "mlflow", "fastapi", "uvicorn", "starlette"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    try:
        wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
        out["wrk"] = (wrk.stdout + wrk.stderr).splitlines()[0].strip()
    except (OSError, IndexError):
        out["wrk"] = "not installed"
    return out


def git_commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


KNOBS = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "ZOO_ORT_THREADS", "ZOO_WORKERS", "ZOO_MAX_BATCH_SIZE", "BENCH_TASKS", "BENCH_ROUNDS",
         "BENCH_MIN_SECONDS", "BENCH_HTTP_ROUNDS", "BENCH_HTTP_SECONDS", "BENCH_CONCURRENCY", "BENCH_SERVERS", "BENCH_BENTO_ENV")


def stamp() -> dict[str, Any]:
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "machine": machine(),
        "versions": versions(),
        "settings": {k: os.environ[k] for k in KNOBS if k in os.environ},
    }


def stamp_markdown(s: dict[str, Any]) -> str:
    m, v = s["machine"], s["versions"]
    libs = ", ".join(f"{k} {val}" for k, val in v.items())
    knobs = ", ".join(f"{k}={val}" for k, val in s["settings"].items()) or "defaults"
    return (
        f"- date: {s['date']}, commit {s['git_commit']}\n"
        f"- machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, {m['os']}, Python {m['python']}; "
        f"load average at start {m['load_average_at_start']}\n"
        f"- libraries: {libs}\n"
        f"- settings: {knobs}\n"
    )


# ---------------------------------------------------------------------------------------------------- statistics


def spread(xs: list[float]) -> dict[str, float]:
    """Median with quartiles, min and max of repeated measurements."""
    xs = sorted(float(x) for x in xs)
    if len(xs) >= 2:
        q1, _, q3 = statistics.quantiles(xs, n=4, method="inclusive")
    else:
        q1 = q3 = xs[0]
    return {"median": statistics.median(xs), "q1": q1, "q3": q3, "min": xs[0], "max": xs[-1], "n": len(xs)}


def fmt(x: float | None, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "-"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"


def fmt_spread(s: dict[str, float], digits: int = 3) -> str:
    """``median (q1-q3)``."""
    return f"{fmt(s['median'], digits)} ({fmt(s['q1'], 2)}-{fmt(s['q3'], 2)})"


def write_results(name: str, data: dict[str, Any], markdown: str) -> tuple[Path, Path]:
    """``bench/results/<name>.json`` and ``.md`` (the latest), plus a dated copy of the JSON."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    js = RESULTS / f"{name}.json"
    md = RESULTS / f"{name}.md"
    text = json.dumps(data, indent=1, default=float)
    tmp = js.with_suffix(".json.tmp")
    tmp.write_text(text)
    tmp.replace(js)
    md.write_text(markdown)
    dated = RESULTS / "history"
    dated.mkdir(exist_ok=True)
    (dated / f"{name}-{data['stamp']['date'].replace(':', '')}.json").write_text(text)
    return js, md


# ---------------------------------------------------------------------------------------------------- champions


@dataclass
class Champion:
    task: str
    version: str
    run_id: str | None
    config_name: str
    folder: Path
    """The downloaded, sha256-verified ``model.onnx`` + ``spec.json``."""
    spec: dict[str, Any]
    model: Any  # models.onnx_model.OnnxModel
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def onnx_path(self) -> Path:
        return self.folder / "model.onnx"


def settings():
    from models.settings import Settings

    s = Settings.from_env()
    s.apply()
    return s


def champions(tasks: list[str]) -> dict[str, Champion]:
    """The champion of each task, downloaded and sha256-checked; exits (non-zero) when there is none."""
    from models.store import connect, names, reading

    st = settings()
    c = connect.client(st)
    found: dict[str, Champion] = {}
    missing = []
    for task in tasks:
        name = names.model_name(task)
        try:
            mv = reading.by_alias(c, name, names.CHAMPION)
        except Exception as exc:  # no database yet
            raise NoDemoState(f"cannot read the registry at {st.registry_uri}: {exc}\nRun `make demo` first.") from exc
        if mv is None:
            missing.append(task)
            continue
        model = reading.open_version(st, c, mv)  # downloads and checks both sha256 before opening
        folder = reading.download(st, c, mv)
        found[task] = Champion(
            task=task,
            version=str(mv.version),
            run_id=mv.run_id,
            config_name=mv.tags.get("config", "demo"),
            folder=folder,
            spec=model.spec,
            model=model,
            tags=dict(mv.tags),
        )
    if missing:
        raise NoDemoState(
            f"no champion in the registry at {st.registry_uri} for: {', '.join(missing)} (ZOO_HOME={st.home}).\n"
            "The benchmark measures the registry's champions: run `make demo` first "
            "(or set BENCH_TASKS to the tasks that have one)."
        )
    return found


def first_output(out: Any) -> Any:
    """A network's first output: the export module of classify also gives its ``cam``."""
    return out[0] if isinstance(out, (tuple, list)) else out


def torch_model(champ: Champion) -> tuple[Any, str]:
    """The champion's network in PyTorch, eval mode, and where its weights came from.

    The flow does not save a separate weights file: the registered run's Lightning
    checkpoint (``ZOO_HOME/checkpoints/<task>/<run_id>/``, read with
    ``weights_only=True``) holds the trained state dict, loaded into the task's
    recipe's ``build(spec)``, then its ``export_module`` (what was exported to ONNX).
    Without a checkpoint the same architecture runs with fresh weights (timing only).
    """
    import torch

    from models.registry import get_task

    t = get_task(champ.task)
    cfg = t.config(champ.config_name if champ.config_name in t.configs else "demo")
    recipe = t.recipe(cfg)
    net = recipe.build(champ.spec["preprocess"])
    source = "fresh weights (no checkpoint of the registered run found; timing only)"
    ckpt_dir = settings().checkpoints / champ.task / str(champ.run_id)
    ckpts = sorted((p for p in ckpt_dir.rglob("*.ckpt") if "lm" not in p.relative_to(ckpt_dir).parts), key=lambda p: p.stat().st_mtime)
    if ckpts:
        state = torch.load(ckpts[-1], map_location="cpu", weights_only=True)["state_dict"]
        state = {k.removeprefix("net."): v for k, v in state.items() if k.startswith("net.")}
        result = net.load_state_dict(state, strict=False)
        loaded = len(state) - len(result.unexpected_keys)
        source = f"checkpoint {ckpts[-1].relative_to(settings().home)} ({loaded} tensors, {len(result.missing_keys)} missing)"
    net = recipe.export_module(net.eval()).eval()
    return net, source


# ---------------------------------------------------------------------------------------------------- inputs


def model_inputs(champ: Champion, batch: int, seed: int = 0) -> list[np.ndarray]:
    """Inputs shaped by the spec at ``batch``: normal floats; ids drawn from the known ones; full-length texts."""
    from models.onnx_model import reference_inputs

    rng = np.random.default_rng(seed)
    xs = reference_inputs(champ.spec, batch=batch, seed=seed)
    pre = champ.spec["preprocess"]
    out = []
    for tensor, x in zip(champ.spec["inputs"], xs):
        name = tensor["name"]
        if champ.task == "recommend":
            n = len(pre["users"] if name == "user" else pre["movies"])
            x = rng.integers(1, n + 1, size=x.shape).astype(np.int64)
        elif champ.task == "sentiment" and name == "tokens":
            x = rng.integers(2, len(pre["vocab"]), size=x.shape).astype(np.int64)
        elif champ.task == "sentiment" and name == "lengths":
            x = np.full(x.shape, xs[0].shape[1], dtype=np.int64)
        elif champ.task == "sales" and name == "cats":
            cards = [len(pre["vocab"][c]) + 1 for c in pre["cat_names"]]
            x = np.stack([rng.integers(1, c, size=batch) for c in cards], axis=1).astype(np.int64)
        out.append(np.ascontiguousarray(x))
    return out


def wait_http(url: str, timeout: float, proc: subprocess.Popen | None = None) -> None:
    """Poll ``url`` until it answers 200; raise if the server process exits or time runs out."""
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer 200 within {timeout:.0f} s")
