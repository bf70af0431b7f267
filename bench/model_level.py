"""Model level: PyTorch eager vs ONNX Runtime (CPU provider), per task, batch 1 and 32.

Both run in this one process on the same inputs. Each round times PyTorch and
ONNX Runtime back to back (the order alternates between rounds) for at least
``BENCH_MIN_SECONDS`` each; a figure is the median over ``BENCH_ROUNDS`` rounds,
with its quartiles, and the speed-up is the median of the per-round ratios, so
that noise from other processes on the machine cancels.

FLOPs per input are counted on the PyTorch network at batch 1 with
``torch.utils.flop_counter.FlopCounterMode`` (convolutions and matrix products;
``nn.LSTM`` layers, which it does not see, are added analytically). The peak is
the best median over ``N x N`` float32 matrix products (``BENCH_MATMUL_N``, default
512, 1024, 2048) timed the same way, through ONNX Runtime and through PyTorch; the fraction of peak is ONNX Runtime's achieved FLOP/s
over the better of the two.

ONNX Runtime runs the session the services run (``models.onnx_model.make_session``:
all graph optimisations, no spinning, ``ZOO_ORT_THREADS`` threads, default all cores).

    python bench/model_level.py          # writes bench/results/model_level.{json,md}
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    Champion,
    champions,
    env_float,
    env_int,
    env_list,
    first_output,
    fmt,
    fmt_spread,
    model_inputs,
    spread,
    stamp,
    stamp_markdown,
    tasks_wanted,
    torch_model,
    write_results,
)

BATCHES = (1, 32)


def per_call(fn: Callable[[], Any], min_seconds: float) -> float:
    """Seconds per call of ``fn``, averaged over as many calls as fit in ``min_seconds`` (at least one)."""
    n, t0 = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= min_seconds:
            return elapsed / n


def interleaved(fns: dict[str, Callable[[], Any]], rounds: int, min_seconds: float, warm: int = 2) -> dict[str, list[float]]:
    """Seconds per call of each function, one sample per round; the order alternates every round."""
    for fn in fns.values():
        for _ in range(warm):
            fn()
    names = list(fns)
    samples: dict[str, list[float]] = {k: [] for k in names}
    for r in range(rounds):
        for name in names if r % 2 == 0 else reversed(names):
            samples[name].append(per_call(fns[name], min_seconds))
    return samples


def count_flops(net: Any, inputs: list[np.ndarray]) -> tuple[float, str]:
    """FLOPs of one forward pass (multiply-add = 2 FLOPs) and how they were counted."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    lstm_flops = 0.0

    def lstm_hook(mod: torch.nn.LSTM, args: tuple, out: Any) -> None:
        nonlocal lstm_flops
        x = args[0]
        if isinstance(x, torch.nn.utils.rnn.PackedSequence):
            steps = float(x.data.shape[0])
        else:
            steps = float(x.shape[0] * x.shape[1])  # batch x time (either layout)
        h = mod.hidden_size
        dirs = 2 if mod.bidirectional else 1
        for layer in range(mod.num_layers):
            i = mod.input_size if layer == 0 else h * dirs
            proj = mod.proj_size or h
            lstm_flops += dirs * steps * 2 * 4 * h * (i + proj)

    hooks = [m.register_forward_hook(lstm_hook) for m in net.modules() if isinstance(m, torch.nn.LSTM)]
    try:
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            net(*(torch.from_numpy(x) for x in inputs))
    finally:
        for h in hooks:
            h.remove()
    counted = float(counter.get_total_flops())
    by_op = {str(k): int(v) for k, v in counter.get_flop_counts().get("Global", {}).items()}
    lstm_seen = any("lstm" in k or "rnn" in k for k in by_op)
    total = counted + (0.0 if lstm_seen else lstm_flops)
    how = "FlopCounterMode" + (" + nn.LSTM analytically" if lstm_flops and not lstm_seen else "")
    return total, how


def peak(n: int, rounds: int, min_seconds: float) -> dict[str, Any]:
    """GFLOP/s of an ``n x n`` float32 matrix product, ONNX Runtime and PyTorch, interleaved."""
    import onnx
    import torch
    from onnx import TensorProto, helper

    from models.onnx_model import make_session

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"])],
        "matmul",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [n, n]), helper.make_tensor_value_info("b", TensorProto.FLOAT, [n, n])],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [n, n])],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    onnx.checker.check_model(proto)
    sess = make_session(proto.SerializeToString(), accelerate=False)
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((n, n), dtype=np.float32), rng.standard_normal((n, n), dtype=np.float32)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    feeds = {"a": a, "b": b}
    samples = interleaved({"onnxruntime": lambda: sess.run(None, feeds), "torch": lambda: torch.mm(ta, tb)}, rounds, min_seconds)
    flops = 2.0 * n**3
    out: dict[str, Any] = {"n": n, "flops": flops}
    for k, xs in samples.items():
        out[k] = spread([flops / s / 1e9 for s in xs])
    out["peak_gflops"] = max(out["onnxruntime"]["median"], out["torch"]["median"])
    return out


QUANTIZED_OPS = {"DynamicQuantizeLSTM", "MatMulInteger", "DynamicQuantizeMatMul", "QLinearMatMul"}


def int8_session(champ: Champion) -> Any:
    """For a task that quantizes (``quantize_ops``) but whose champion is a float model: an ONNX Runtime
    session on a dynamic INT8 copy of it, made here the way the export step makes one (timing only)."""
    import tempfile

    import onnx

    from models.export import quantize_int8
    from models.onnx_model import make_session
    from models.registry import get_task

    task = get_task(champ.task)
    if not task.quantize_ops or QUANTIZED_OPS & {n.op_type for n in onnx.load(str(champ.onnx_path)).graph.node}:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        return make_session(quantize_int8(task, champ.onnx_path, Path(tmp) / "int8.onnx").read_bytes())


def bench_task(champ: Champion, rounds: int, min_seconds: float) -> dict[str, Any]:
    import torch

    net, source = torch_model(champ)
    sess = champ.model.session
    names = [i.name for i in sess.get_inputs()]
    outputs = champ.model.output_names
    int8 = int8_session(champ)
    flops, how = count_flops(net, model_inputs(champ, 1))
    result: dict[str, Any] = {"task": champ.task, "version": champ.version, "weights": source, "flops_per_input": flops, "flops_counted_by": how, "batches": {}}
    for batch in BATCHES:
        xs = model_inputs(champ, batch)
        txs = [torch.from_numpy(x) for x in xs]
        feeds = dict(zip(names, xs))

        def eager() -> Any:
            with torch.inference_mode():
                return net(*txs)

        def ort() -> Any:  # every output, one row per call where the champion's spec says rows_alone (as served)
            return champ.model.run_outputs(outputs, *xs)

        diff = float(np.max(np.abs(first_output(eager()).float().numpy() - ort()[0])))
        fns = {"torch": eager, "onnxruntime": ort}
        if int8 is not None:  # one row per call, as the services run an INT8 model (its spec says rows_alone)
            rows = [{n: x[i : i + 1] for n, x in feeds.items()} for i in range(batch)]
            fns["int8"] = lambda: [int8.run(None, row) for row in rows]
        samples = interleaved(fns, rounds, min_seconds)
        ratios = [t / o for t, o in zip(samples["torch"], samples["onnxruntime"])]
        result["batches"][str(batch)] = {
            "torch_ms": spread([s * 1000 for s in samples["torch"]]),
            "onnxruntime_ms": spread([s * 1000 for s in samples["onnxruntime"]]),
            "torch_per_s": spread([batch / s for s in samples["torch"]]),
            "onnxruntime_per_s": spread([batch / s for s in samples["onnxruntime"]]),
            "speedup": spread(ratios),
            "max_abs_diff": diff,
        }
        if int8 is not None:
            result["batches"][str(batch)]["int8"] = {
                "onnxruntime_ms": spread([s * 1000 for s in samples["int8"]]),
                "speedup": spread([t / q for t, q in zip(samples["torch"], samples["int8"])]),
                "vs_float": spread([f / q for f, q in zip(samples["onnxruntime"], samples["int8"])]),
            }
        print(
            f"  {champ.task} batch {batch}: torch {fmt_spread(result['batches'][str(batch)]['torch_ms'])} ms, "
            f"onnxruntime {fmt_spread(result['batches'][str(batch)]['onnxruntime_ms'])} ms, "
            f"speed-up {fmt_spread(result['batches'][str(batch)]['speedup'])}",
            flush=True,
        )
    return result


def markdown(data: dict[str, Any]) -> str:
    pk = data["peak"]
    lines = [
        "# Model level: PyTorch eager vs ONNX Runtime (CPU provider)",
        "",
        stamp_markdown(data["stamp"]),
        f"Median over {data['rounds']} interleaved rounds of at least {data['min_seconds']} s each; "
        "(q1-q3) is the interquartile range. Speed-up: PyTorch time / ONNX Runtime time, median of the per-round ratios. "
        f"Peak: the best of float32 matrix products of sizes {', '.join(pk['all_sizes'])}, here {pk['n']}x{pk['n']}: ONNX Runtime {fmt_spread(pk['onnxruntime'])} GFLOP/s, "
        f"PyTorch {fmt_spread(pk['torch'])} GFLOP/s; the better median, {fmt(pk['peak_gflops'])} GFLOP/s, is the peak.",
        "",
        "| task | batch | PyTorch ms | ONNX Runtime ms | speed-up | PyTorch inputs/s | ONNX Runtime inputs/s | MFLOP / input | ORT % of peak | max abs diff |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in data["tasks"]:
        for batch, b in r["batches"].items():
            ort_gflops = r["flops_per_input"] * b["onnxruntime_per_s"]["median"] / 1e9
            share = 100 * ort_gflops / pk["peak_gflops"] if r["flops_per_input"] else float("nan")
            lines.append(
                f"| {r['task']} v{r['version']} | {batch} | {fmt_spread(b['torch_ms'])} | {fmt_spread(b['onnxruntime_ms'])} | "
                f"**{fmt(b['speedup']['median'], 3)}x** ({fmt(b['speedup']['q1'], 2)}-{fmt(b['speedup']['q3'], 2)}) | "
                f"{fmt(b['torch_per_s']['median'])} | {fmt(b['onnxruntime_per_s']['median'])} | "
                f"{fmt(r['flops_per_input'] / 1e6)} | {fmt(share, 2)}% | {b['max_abs_diff']:.1e} |"
            )
    int8_rows = [(r, batch, b["int8"]) for r in data["tasks"] for batch, b in r["batches"].items() if "int8" in b]
    if int8_rows:
        lines += [
            "",
            "Tasks that quantize to INT8 at export but whose champion is a float model: the same champion quantized here "
            "(dynamic INT8, the export step's settings), timed in the same interleaved rounds, one row per call as the services run it:",
            "",
            "| task | batch | INT8 ONNX Runtime ms | speed-up over PyTorch | over float ONNX Runtime |",
            "| --- | --- | --- | --- | --- |",
        ]
        for r, batch, q in int8_rows:
            lines.append(
                f"| {r['task']} v{r['version']} INT8 | {batch} | {fmt_spread(q['onnxruntime_ms'])} | "
                f"**{fmt(q['speedup']['median'], 3)}x** ({fmt(q['speedup']['q1'], 2)}-{fmt(q['speedup']['q3'], 2)}) | "
                f"{fmt(q['vs_float']['median'], 3)}x |"
            )
    lines += ["", "PyTorch weights and FLOP counting per task:", ""]
    lines += [f"- {r['task']}: {r['weights']}; FLOPs by {r['flops_counted_by']}" for r in data["tasks"]]
    return "\n".join(lines) + "\n"


def main() -> int:
    import torch

    rounds = env_int("BENCH_ROUNDS", 7)
    min_seconds = env_float("BENCH_MIN_SECONDS", 0.4)
    tasks = tasks_wanted()
    champs = champions(tasks)
    st = stamp()
    st["torch_threads"] = torch.get_num_threads()
    print(f"model level: {', '.join(tasks)}; {rounds} rounds of >= {min_seconds} s; torch threads {torch.get_num_threads()}", flush=True)
    sizes = [int(n) for n in env_list("BENCH_MATMUL_N", ("512", "1024", "2048"))]
    peaks = [peak(n, rounds, min_seconds) for n in sizes]
    pk = max(peaks, key=lambda p: p["peak_gflops"])
    pk["all_sizes"] = {str(p["n"]): {"onnxruntime": p["onnxruntime"]["median"], "torch": p["torch"]["median"]} for p in peaks}
    print(f"  peak: onnxruntime {fmt_spread(pk['onnxruntime'])} GFLOP/s, torch {fmt_spread(pk['torch'])} GFLOP/s", flush=True)
    results = [bench_task(champs[t], rounds, min_seconds) for t in tasks if t in env_list("BENCH_TASKS", tasks)]
    data = {"stamp": st, "rounds": rounds, "min_seconds": min_seconds, "peak": pk, "tasks": results}
    js, md = write_results("model_level" + os.environ.get("BENCH_RESULT_SUFFIX", ""), data, markdown(data))
    print(markdown(data))
    print(f"wrote {js} and {md}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
