"""The nodes of a multi-node retrain: node 0 runs the flow, every other node runs its share of the ranks.

A retrain on ``ZOO_NUM_NODES`` nodes is one flow run on node 0 (``ZOO_NODE_RANK=0``),
which pulls the data, starts that node's ranks with ``torchrun`` and, once every
rank has trained, exports and registers. Each other node pulls the same data
version and starts its own ranks (:func:`train_node`, ``zoo train-node TASK``);
they all meet at ``ZOO_MASTER_ADDR:ZOO_MASTER_PORT`` (torchrun's static
rendezvous) and Lightning's strategy joins them.

The Kubernetes retrain Job (``infra/prefect/k8s-work-pool.json``, an Indexed
Job with one pod per node) starts every pod as
``python -m pipelines.node <the flow run's command>``: :func:`main` runs the
command on node 0 and, on the others, reads the flow run's task and config
from the Prefect API (``PREFECT__FLOW_RUN_ID``) and trains.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Sequence
from typing import Any

from models.registry import get_task
from models.settings import Settings
from models.training import distributed
from pipelines import ingest


def train_node(settings: Settings, task: str, config: str = "demo", overrides: dict[str, Any] | None = None) -> None:
    """Pull the data and run this node's ranks of ``task``'s retrain; returns when they end, raises when one failed."""
    d = settings.distributed
    if d.node_rank == 0:
        raise ValueError(f"ZOO_NODE_RANK is 0: node 0 runs the retrain itself (`zoo train {task}`)")
    t = get_task(task)
    cfg = t.config(config, **{**d.overrides(), **(overrides or {})})  # as the flow resolves it on node 0
    plan = distributed.plan(cfg)
    if d.node_rank >= plan.num_nodes:
        raise ValueError(f"ZOO_NODE_RANK={d.node_rank} but the retrain runs on {plan.num_nodes} node(s) (ZOO_NUM_NODES)")
    ingest.pull(settings)  # once per node, before its ranks start
    checkpoints = settings.checkpoints / task / f"node{d.node_rank}"  # rank 0 alone writes checkpoints; the path keeps the callbacks alike
    args = distributed.rank_args(task, cfg, settings.project_root / ingest.DATA_DIR, None, None, checkpoints)
    try:
        distributed.run_torchrun(distributed.torchrun_command(plan, args, d))
    finally:
        shutil.rmtree(checkpoints, ignore_errors=True)


def flow_run_parameters(flow_run_id: str) -> dict[str, Any]:
    """The parameters of a flow run, read from the Prefect API (``PREFECT_API_URL``)."""
    from uuid import UUID

    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return dict(client.read_flow_run(UUID(flow_run_id)).parameters)


def main(argv: Sequence[str] | None = None) -> int:
    command = list(sys.argv[1:] if argv is None else argv)
    settings = Settings.from_env()
    if settings.distributed.node_rank == 0:
        if not command:
            print("usage: python -m pipelines.node COMMAND... (node 0 runs COMMAND, the flow run)", file=sys.stderr)
            return 2
        os.execvp(command[0], command)
    settings.apply()
    run_id = os.environ.get("PREFECT__FLOW_RUN_ID", "")
    if not run_id:
        print(f"error: node {settings.distributed.node_rank} needs PREFECT__FLOW_RUN_ID to find the retrain's task and config", file=sys.stderr)
        return 2
    params = flow_run_parameters(run_id)
    try:
        train_node(settings, params["task"], params.get("config", "demo"), params.get("overrides"))
    except (distributed.DistributedTrainingFailed, ValueError, ingest.IngestError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
