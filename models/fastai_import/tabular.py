"""``tabular_learner`` -> ``sales``: a Learner trained on the service's own features (:mod:`models.tasks.sales.course`).

The Learner's ``TabularModel`` is exported as it is, behind a selection of the
service's feature columns in the Learner's order. Its ``Categorify`` classes
become the spec's vocabularies (fastai's code ``i`` is the service's index
``i``: ``#na#`` and unseen values are 0 on both sides), ``FillMissing``'s fill
values its medians, ``Normalize``'s means and standard deviations its own.
The store table and calendars are the platform's (a ``.pkl`` holds no rows).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from models.fastai_import import Unsupported
from models.fastai_import.converted import Converted, Probe

PROBES = 24
RECORD_FIELDS = ("Store", "Date", "Open", "Promo", "StateHoliday", "SchoolHoliday")


class Selected(nn.Module):
    """The service's ``(cats, conts)`` -> the Learner's columns, in its order -> its output, one value per row."""

    def __init__(self, model: nn.Module, cat_index: list[int], cont_index: list[int]) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("cat_index", torch.tensor(cat_index, dtype=torch.int64))
        self.register_buffer("cont_index", torch.tensor(cont_index, dtype=torch.int64))

    def forward(self, cats: torch.Tensor, conts: torch.Tensor) -> torch.Tensor:
        return self.model(cats[:, self.cat_index], conts[:, self.cont_index]).squeeze(1)


def y_range(model: nn.Module) -> tuple[float, float]:
    last = list(model.layers)[-1]
    if type(last).__name__ != "SigmoidRange":
        raise Unsupported("the Learner has no y_range; the sales model puts log sales through a sigmoid range")
    low, high = float(last.low), float(last.high)
    if high > 30:
        raise Unsupported(f"y_range tops out at {high:g}: the service reads the output as log sales; train on log(Sales) (course_frames)")
    return low, high


def convert(learn: Any, out: Path, data_dir: Path | None = None) -> Converted:
    from models.tasks.sales.course import features_frame, platform_spec
    from models.tasks.sales.features import CAT_NAMES, CONT_NAMES, Preprocessor

    model = learn.model.eval().cpu()
    if type(model).__name__ != "TabularModel":
        raise Unsupported(f"a sales Learner is a tabular_learner (TabularModel), not {type(model).__name__}")
    if data_dir is None:
        raise Unsupported("the import needs the platform's sales data (store table, calendars)")
    cat_names, cont_names = [str(c) for c in learn.dls.cat_names], [str(c) for c in learn.dls.cont_names]
    foreign = [c for c in cat_names if c not in CAT_NAMES] + [c for c in cont_names if c not in CONT_NAMES]
    if foreign:
        raise Unsupported(f"the Learner reads columns the service does not compute: {foreign}; train it on models.tasks.sales.course.course_frames")
    procs = {type(p).__name__: p for p in learn.dls.procs}
    if set(procs) - {"Categorify", "FillMissing", "Normalize", "RegressionSetup"} or not {"Categorify", "Normalize"} <= set(procs):
        raise Unsupported(f"procs {sorted(procs)} are not served: Categorify, FillMissing and Normalize are")
    spec, _, valid = platform_spec(data_dir)
    low, high = y_range(model)
    classes, fill = procs["Categorify"].classes, getattr(procs.get("FillMissing"), "na_dict", {})
    norm = procs["Normalize"]
    spec["vocab"] = {**spec["vocab"], **{c: [str(v) for v in list(classes[c])[1:]] for c in cat_names}}
    spec["medians"] = {**spec["medians"], **{c: float(v) for c, v in fill.items()}}
    spec["means"] = {**spec["means"], **{c: float(norm.means[c]) for c in cont_names}}
    spec["stds"] = {**spec["stds"], **{c: float(norm.stds[c]) for c in cont_names}}
    spec["y_range"] = [low, high]
    net = Selected(model, [CAT_NAMES.index(c) for c in cat_names], [CONT_NAMES.index(c) for c in cont_names]).eval()

    rows = valid.sample(n=min(PROBES, len(valid)), random_state=4163).sort_values(["Store", "Date"])
    prep = Preprocessor(spec)
    fills = {c: float(spec["medians"][c]) for c in cont_names if c not in fill}
    frame = features_frame(prep, rows.drop(columns=["Sales"]), fills)
    preds, _ = learn.get_preds(dl=learn.dls.test_dl(frame))
    records = [{k: (str(v.date()) if k == "Date" else (str(v) if k == "StateHoliday" else int(v))) for k, v in r.items()} for r in rows[list(RECORD_FIELDS)].to_dict("records")]
    probes = [Probe("sales", {"records": records}, [float(np.exp(p)) for p in preds.flatten().tolist()])]
    features = prep.transform({k: np.asarray([r[k] for r in records]) for k in ("Store", "Date", "Promo", "StateHoliday", "SchoolHoliday")})
    with torch.no_grad():
        mine = net(torch.from_numpy(features.cats), torch.from_numpy(features.conts)).numpy()
    if not np.allclose(mine, preds.flatten().numpy(), atol=1e-4):
        raise Unsupported("the service's features, read the Learner's way, do not give fastai's answers: was it trained on course_frames?")
    learner = {"model": "TabularModel", "loss": type(learn.loss_func).__name__, "cat_names": ",".join(cat_names), "cont_names": ",".join(cont_names)}
    return Converted(net, spec, (features.cats, features.conts), probes, learner)
