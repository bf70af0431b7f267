"""The one place a fastai ``.pkl`` is read: ``python -m models.fastai_import.child PATH TASK OUT [DATA]``.

Started by :mod:`pipelines.fastai_import` in a process of its own, with an
environment that holds no registry credentials. Writes into ``OUT``:
``model.onnx``, ``spec.json`` (the task's spec as the Learner knows it),
``probes.json`` (requests and fastai's answers) and ``learner.json``. Exit
status 3 and one line on stderr: the Learner is of a kind the import does not
serve; 1: anything else went wrong.
"""

from __future__ import annotations

import importlib
import json
import sys
import warnings
from pathlib import Path

UNSUPPORTED_EXIT = 3


def run(path: Path, task: str, out: Path, data_dir: Path | None) -> dict[str, object]:
    from fastai.learner import load_learner

    from models.export import check_parity, export_onnx
    from models.fastai_import import CONVERTERS
    from models.registry import get_task

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fastai's own warning about pickles: the import asked for --trust-pickle
        learn = load_learner(path, cpu=True)
    converted = importlib.import_module(CONVERTERS[task]).convert(learn, out, data_dir)
    t = get_task(task)
    onnx_path = export_onnx(t, converted.net, converted.spec, converted.example, out / "model.onnx")
    names = [i.name for i in t.inputs(converted.spec)]
    checked = check_parity(converted.net, onnx_path, names, converted.example, atol=t.parity_atol, rtol=t.parity_rtol, view=t.parity_view)
    (out / "spec.json").write_text(json.dumps(converted.spec))
    (out / "probes.json").write_text(json.dumps([p.to_json() for p in converted.probes]))
    import fastai

    learner = {**converted.learner, "fastai_version": fastai.__version__, "onnx_max_abs_diff": checked.max_abs_diff}
    (out / "learner.json").write_text(json.dumps(learner))
    return learner


def main(argv: list[str]) -> int:
    from models.fastai_import import Unsupported

    path, task, out = Path(argv[0]), argv[1], Path(argv[2])
    data_dir = Path(argv[3]) if len(argv) > 3 else None
    try:
        run(path, task, out, data_dir)
    except Unsupported as exc:
        print(f"not importable as {task}: {exc}", file=sys.stderr)
        return UNSUPPORTED_EXIT
    except Exception as exc:
        print(f"reading or converting the Learner failed: {type(exc).__name__}: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
