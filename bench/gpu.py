"""The GPU check: the export step (ONNX export plus parity check) and a model-level benchmark on a CUDA GPU.

Uses ``models/`` alone (no MLflow, Prefect or BentoML), so it runs on a bare GPU
machine that has torch, Lightning, onnx, onnxscript and onnxruntime::

    python bench/gpu.py --data DATA_DIR --out OUT_DIR [--tasks classify segment]

``DATA_DIR`` holds the tasks' sample datasets (``mnist_tiny/``, ``camvid_tiny/``).
For each task it trains the demo config (Lightning picks the GPU, ``bf16-mixed``
where it has bfloat16, else 16-bit mixed precision; ``--cpu`` hides the GPUs for
the same run on the CPU) and reports examples per second per device, exports to ONNX, runs the parity check on the CPU provider (the gate)
and with ``accelerate=True`` (TensorRT FP16, then CUDA, where ONNX Runtime has
them), then times PyTorch eager, ``torch.compile`` and ONNX Runtime at batch 1
and 32: medians over interleaved rounds, with the interquartile range.
Writes ``gpu.json`` and ``gpu.md`` to ``OUT_DIR``.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _quartiles(xs: list[float]) -> tuple[float, float, float]:
    q = statistics.quantiles(xs, n=4)
    return q[0], statistics.median(xs), q[2]


def _interleaved(fns: dict[str, Callable[[], None]], rounds: int, inner: int) -> dict[str, dict[str, float]]:
    """Time each callable ``inner`` times per round, rounds interleaved; ms per call."""
    samples: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            for _ in range(inner):
                fn()
            samples[name].append((time.perf_counter() - t0) * 1000 / inner)
    out = {}
    for name, xs in samples.items():
        q1, med, q3 = _quartiles(xs)
        out[name] = {"median_ms": med, "q1_ms": q1, "q3_ms": q3}
    return out


def environment() -> dict[str, object]:
    import onnxruntime as ort
    import torch

    smi = (
        subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        if shutil.which("nvidia-smi")
        else "no nvidia-smi"
    )
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda_available": torch.cuda.is_available(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "nvidia_smi": smi,
        "onnxruntime": ort.__version__,
        "onnxruntime_providers": ort.get_available_providers(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def check_task(name: str, data_dir: Path, work_dir: Path, rounds: int, config_name: str = "demo") -> dict[str, object]:
    import onnxruntime as ort
    import torch

    from models.export import check_task_parity, export_onnx
    from models.onnx_model import accelerated_providers, make_session
    from models.registry import get_task

    task = get_task(name)
    config = task.config(config_name)
    row: dict[str, object] = {"task": name, "config": config_name}
    device = "cuda" if torch.cuda.is_available() else "cpu"
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    data = task.load(data_dir, config)
    from models.training.distributed import plan

    row["plan"] = plan(config).figures(config)  # precision: bf16-mixed where the GPU has bfloat16
    t0 = time.perf_counter()
    recipe = task.recipe(config)
    result = recipe.train(data, progress=False)
    row["train_s"] = round(time.perf_counter() - t0, 1)
    # examples seen per second of the whole fit (data loading and validation included), per GPU
    row["train_items_per_s_per_device"] = round(len(data.train_y) * config.epochs / row["train_s"] / int(row["plan"]["devices_per_node"]), 1)
    row["metric_name"] = task.metric_name
    row["metric"] = result.metric
    row["baseline"] = task.baseline(data)

    module = recipe.export_module(result.net)
    path = export_onnx(task, module, data.spec, data.valid_x, work_dir / f"{name}.onnx")
    cpu = check_task_parity(task, module, path, data.spec, data)
    row["parity_cpu_max_abs_diff"] = cpu.max_abs_diff
    row["accelerated_providers"] = list(accelerated_providers())
    try:
        gpu = check_task_parity(task, module, path, data.spec, data, accelerate=True)
        row["parity_accelerated_max_abs_diff"] = gpu.max_abs_diff
    except Exception as exc:  # reported, not hidden: the figure is what this script exists for
        row["parity_accelerated_error"] = f"{type(exc).__name__}: {exc}"

    # Model-level benchmark on the GPU: eager fp32, torch.compile, ONNX Runtime.
    net = module.eval().to(device)
    compiled = torch.compile(net)
    cpu_session = make_session(path.read_bytes(), accelerate=False)
    sessions = {"ort_cpu": cpu_session}
    if row["accelerated_providers"]:
        sessions["ort_" + row["accelerated_providers"][0].replace("ExecutionProvider", "").lower()] = make_session(
            path.read_bytes(), accelerate=True
        )
    names = [t.name for t in task.inputs(data.spec)]
    bench: dict[str, object] = {}
    for batch in (1, 32):
        idx = np.arange(batch) % len(data.valid_x[0])
        arrays = tuple(np.ascontiguousarray(a[idx]) for a in data.valid_x)
        tensors = tuple(torch.from_numpy(a).to(device) for a in arrays)
        feeds = dict(zip(names, arrays))

        def eager() -> None:
            with torch.inference_mode():
                net(*tensors)
            sync()

        def comp() -> None:
            with torch.inference_mode():
                compiled(*tensors)
            sync()

        t0 = time.perf_counter()
        comp()
        compile_s = time.perf_counter() - t0
        fns: dict[str, Callable[[], None]] = {"torch_eager": eager, "torch_compile": comp}
        for key, sess in sessions.items():
            fns[key] = lambda s=sess: s.run(None, feeds)
        for fn in fns.values():  # warm-up
            for _ in range(3):
                fn()
        timings = _interleaved(fns, rounds=rounds, inner=5)
        for key, t in timings.items():
            t["items_per_s"] = batch * 1000 / t["median_ms"]
        bench[f"batch{batch}"] = {"compile_s": round(compile_s, 1), **timings}
    row["bench"] = bench
    row["ort_device"] = ort.get_device()
    return row


def markdown(env: dict[str, object], rows: list[dict[str, object]]) -> str:
    lines = [
        "# GPU check",
        "",
        f"Device: {env['gpu']} ({env['nvidia_smi']}); torch {env['torch']}, onnxruntime {env['onnxruntime']} "
        f"(providers: {', '.join(env['onnxruntime_providers'])}); {env['date']}.",
        "",
        "| task | precision | train (s) | items/s per device | metric | baseline | parity, CPU provider (max abs diff) | accelerated parity |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['task']} | failed: {r['error']} | | | | | | |")
            continue
        acc = (
            f"{r['parity_accelerated_max_abs_diff']:.3g} on {', '.join(r['accelerated_providers'])}"
            if r["accelerated_providers"] and "parity_accelerated_max_abs_diff" in r
            else r.get("parity_accelerated_error", "no TensorRT/CUDA provider in this onnxruntime: ran on the CPU provider")
        )
        lines.append(
            f"| {r['task']} | {r['plan']['precision_used']} | {r['train_s']} | {r['train_items_per_s_per_device']} | {r['metric_name']} {r['metric']:.4f} | {r['baseline']:.4f} "
            f"| {r['parity_cpu_max_abs_diff']:.3g} | {acc} |"
        )
    lines += ["", "| task | batch | variant | median ms (IQR) | items/s |", "| --- | --- | --- | --- | --- |"]
    for r in rows:
        for batch, b in r.get("bench", {}).items():
            for key, t in b.items():
                if key == "compile_s":
                    continue
                lines.append(
                    f"| {r['task']} | {batch[5:]} | {key} | {t['median_ms']:.3f} ({t['q1_ms']:.3f}-{t['q3_ms']:.3f}) "
                    f"| {t['items_per_s']:.0f} |"
                )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--tasks", nargs="+", default=["classify", "segment"])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--config", default="demo", help="the tasks' named config (tiny for a dry run)")
    parser.add_argument("--cpu", action="store_true", help="hide the GPUs: the same run on the CPU, to compare with")
    args = parser.parse_args()
    if args.cpu:
        import os

        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # before torch is imported
    sys.path.insert(0, str(ROOT))
    args.out.mkdir(parents=True, exist_ok=True)
    env = environment()
    print(json.dumps(env, indent=1), flush=True)
    rows = []
    work = Path(tempfile.mkdtemp(prefix="zoo-gpu-"))
    for name in args.tasks:
        try:
            row = check_task(name, args.data, work, args.rounds, args.config)
        except Exception as exc:
            import traceback

            traceback.print_exc()
            row = {"task": name, "error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(row, indent=1, default=str), flush=True)
        rows.append(row)
        (args.out / "gpu.json").write_text(json.dumps({"environment": env, "tasks": rows}, indent=1, default=str))
        (args.out / "gpu.md").write_text(markdown(env, rows))
    print((args.out / "gpu.md").read_text())
    return 0 if all("error" not in r for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
