"""One rank of a distributed run, as ``torchrun`` starts it (see :mod:`models.training.distributed`).

Every rank reads the same data with the same config and seed and runs the
task's whole recipe; Lightning's strategy (from the config, through
:func:`~models.training.distributed.plan`) joins the ranks that ``torchrun``
describes in the environment. Rank 0 alone logs epochs to the MLflow run,
shows progress and writes the result; the other ranks only train.

    python -m models.training.rank --task classify --values '{...}' --data-dir data --out DIR
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from pathlib import Path

from models.faults import failpoint
from models.registry import get_task
from models.settings import Settings
from models.training import distributed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="One rank of a distributed training run (started by torchrun).")
    parser.add_argument("--task", required=True)
    parser.add_argument("--values", required=True, help="the resolved config, as JSON")
    parser.add_argument("--data-dir", required=True, type=Path)
    parser.add_argument("--out", type=Path, help="where rank 0 writes the weights and result")
    parser.add_argument("--run-id", help="the MLflow run rank 0 logs epochs to")
    parser.add_argument("--checkpoints", type=Path)
    args = parser.parse_args(argv)

    settings = Settings.from_env()
    settings.apply()
    rank = int(os.environ.get("RANK", "0"))
    task = get_task(args.task)
    config = task.config_class(**json.loads(args.values))
    p = distributed.plan(config)
    if p.world_size != int(os.environ.get("WORLD_SIZE", "1")):
        raise SystemExit(f"the config asks for {p.world_size} processes, torchrun started {os.environ.get('WORLD_SIZE')}")
    data = task.load(args.data_dir, config)
    recipe = task.recipe(config)
    listeners = []
    if rank == 0 and args.run_id:
        from models.store.connect import client
        from models.store.runs import RunLog

        listeners.append(RunLog(client(settings), args.run_id).epoch_listener)
    chaos = "train" if rank == 0 else f"rank{rank}"  # ZOO_FAILPOINTS: kill rank 0 (train) or rank 1 (rank1)
    listeners.append(lambda _: failpoint(settings, chaos))
    result = recipe.train(data, checkpoint_dir=args.checkpoints, listeners=listeners, progress=rank == 0)
    if rank == 0 and args.out is not None:
        summary = {"history": result.history, "histories": recipe.histories, "report": recipe.report}
        distributed.write_result(args.out, result.net, summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
