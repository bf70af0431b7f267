"""``collab_learner`` (the dot-product model) -> ``recommend``: its embeddings, biases, y range and id classes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from models.fastai_import import Unsupported
from models.fastai_import.converted import Converted, Probe

PROBES = 40


def ids(values: Any, what: str) -> list[int]:
    """A Categorify vocabulary (``#na#`` first) -> the raw integer ids after it."""
    values = list(values)
    if not values or str(values[0]) != "#na#":
        raise Unsupported(f"the {what} classes do not start with fastai's '#na#': {values[:3]}")
    try:
        return [int(v) for v in values[1:]]
    except (TypeError, ValueError):
        raise Unsupported(f"the {what} ids are not integers (the recommend API takes integer ids): {values[1:4]}") from None


def convert(learn: Any, out: Path, data_dir: Path | None = None) -> Converted:
    from fastai.collab import EmbeddingDotBias as FastaiDotBias

    from models.tasks.recommend.recipe import EmbeddingDotBias

    model = learn.model.eval().cpu()
    if not isinstance(model, FastaiDotBias):
        raise Unsupported(f"only collab_learner's dot-product model is served (use_nn=False), not {type(model).__name__}")
    if model.y_range is None:
        raise Unsupported("the Learner has no y_range; the recommend model puts ratings through a sigmoid range")
    user_name, item_name = list(learn.dls.classes)[:2]
    users, movies = ids(learn.dls.classes[user_name], "user"), ids(learn.dls.classes[item_name], "item")
    lo, hi = (float(v) for v in model.y_range)
    net = EmbeddingDotBias(len(users) + 1, len(movies) + 1, model.u_weight.weight.shape[1], (lo, hi))
    net.load_state_dict({k: v.detach().clone() for k, v in model.state_dict().items()})
    net.eval()
    spec = {"users": users, "movies": movies, "y_range": [lo, hi]}
    rng = np.random.default_rng(4163)
    pick_u = rng.choice(users, size=PROBES)
    pick_m = rng.choice(movies, size=PROBES)
    frame = pd.DataFrame({user_name: pick_u, item_name: pick_m})
    preds, _ = learn.get_preds(dl=learn.dls.test_dl(frame))
    request = {"user_ids": [int(u) for u in pick_u], "movie_ids": [int(m) for m in pick_m]}
    probes = [Probe("rate", request, [float(p) for p in preds.flatten().tolist()])]
    from models.tasks.recommend import IdMaps

    index_u, index_m = IdMaps(spec).encode(pick_u, pick_m)  # the service's own id lookup
    with torch.no_grad():
        mine = net(torch.from_numpy(index_u), torch.from_numpy(index_m)).numpy()
    if not np.allclose(mine, preds.flatten().numpy(), atol=1e-5):
        raise Unsupported("the Learner's model does not compute what fastai's EmbeddingDotBias does (a changed forward?)")
    learner = {"model": type(model).__name__, "loss": type(learn.loss_func).__name__, "user_column": str(user_name), "item_column": str(item_name)}
    return Converted(net, spec, (index_u, index_m), probes, learner)
