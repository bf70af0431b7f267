"""Distributed training: Lightning's DDP over two CPU processes (gloo) that torchrun starts, like one GPU per rank."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import psutil
import pytest
from conftest import make_project, project_env
from mlflow import MlflowClient

from models.registry import get_task
from models.settings import Settings
from models.store import connect, reading
from models.store.names import CHALLENGER
from models.training.distributed import DistributedTrainingFailed
from pipelines import flows, ingest

pytestmark = pytest.mark.slow
DDP = {"devices": 2, "strategy": "ddp"}


@pytest.fixture(scope="module")
def ddp_project(tmp_path_factory: pytest.TempPathFactory, mirror: Path, prefect_harness: None) -> Iterator[Settings]:
    with project_env(make_project(tmp_path_factory.mktemp("ddp"), mirror)) as settings:
        ingest.ingest(settings)
        yield settings


def versions(settings: Settings, task: str) -> set[str]:
    return {str(v.version) for v in connect.client(settings).search_model_versions(f"name='{task}'")}


@pytest.mark.parametrize("task", ["classify", "sentiment"])
def test_ddp_on_two_processes_registers_one_version_that_scores_like_one_process(ddp_project: Settings, task: str) -> None:
    t = get_task(task)
    config = t.config("tiny")
    before = versions(ddp_project, task)
    result = flows.retrain(task, "tiny", DDP, progress=False, force=True)
    assert versions(ddp_project, task) - before == {result.version}
    c = connect.client(ddp_project)
    assert str(reading.by_alias(c, task, CHALLENGER).version) == result.version
    run = MlflowClient(ddp_project.tracking_uri).get_run(result.run_id)
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert (params["world_size"], params["strategy_used"], params["devices"]) == ("2", "ddp", "2")
    assert params["global_batch_size"] == str(2 * config.batch_size)
    history = MlflowClient(ddp_project.tracking_uri).get_metric_history(result.run_id, "train_loss")
    assert len(history) >= config.epochs  # rank 0 logged every epoch, once
    assert len({m.step for m in history}) == len(history)

    # one process on the same data, with the same global batch, the same seed
    data = t.load(ddp_project.project_root / "data", config)
    single = t.recipe(replace(config, batch_size=2 * config.batch_size)).train(data, progress=False)
    print(f"{task}: {t.metric_name} ddp {result.metric:.4f}, one process {single.metric:.4f}")
    assert abs(result.metric - single.metric) <= t.promotion.tolerance


def test_a_rank_that_dies_fails_the_run_and_registers_nothing(ddp_project: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    before = versions(ddp_project, "classify")
    c = connect.client(ddp_project)
    challenger = reading.by_alias(c, "classify", CHALLENGER)
    monkeypatch.setenv("ZOO_FAILPOINTS", "rank1")  # rank 1 SIGKILLs itself after its first epoch
    with pytest.raises(DistributedTrainingFailed, match="torchrun exited"):
        flows.retrain("classify", "tiny", {**DDP, "epochs": 2}, progress=False, force=True)
    assert versions(ddp_project, "classify") == before
    after = reading.by_alias(c, "classify", CHALLENGER)
    assert (after and after.version) == (challenger and challenger.version)
    (run,) = MlflowClient(ddp_project.tracking_uri).search_runs(
        [MlflowClient(ddp_project.tracking_uri).get_experiment_by_name(ddp_project.experiment).experiment_id],
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    assert run.info.status == "FAILED"
    left = [p for p in psutil.Process().children(recursive=True) if "torch.distributed.run" in " ".join(p.cmdline()) or "models.training.rank" in " ".join(p.cmdline())]
    assert not left, f"training processes left running: {left}"


def test_two_nodes_meet_and_node_zero_registers(ddp_project: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two "nodes" on this machine, one process each: node 0 runs the flow, node 1 `zoo train-node` from its own copy."""
    from pipelines.serving import free_port

    nodes = {"ZOO_NUM_NODES": "2", "ZOO_DEVICES": "1", "ZOO_MASTER_ADDR": "127.0.0.1", "ZOO_MASTER_PORT": str(free_port())}
    other = tmp_path / "node1"
    shutil.copytree(ddp_project.project_root, other, ignore=shutil.ignore_patterns(".zoo"))
    env = {**os.environ, **nodes, "ZOO_NODE_RANK": "1", "ZOO_PROJECT_ROOT": str(other), "ZOO_HOME": str(tmp_path / "home1"), "ZOO_DVC_REMOTE": ddp_project.dvc_remote_url}
    for key in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "PREFECT_HOME", "BENTOML_HOME"):
        env.pop(key, None)  # node 1 has no registry: it only trains
    zoo = Path(sys.executable).with_name("zoo")
    with (tmp_path / "node1.log").open("wb") as log:
        node1 = subprocess.Popen([str(zoo), "train-node", "classify", "--config", "tiny"], env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            for key, value in nodes.items():
                monkeypatch.setenv(key, value)
            before = versions(ddp_project, "classify")
            result = flows.retrain("classify", "tiny", progress=False, force=True)
            assert node1.wait(timeout=300) == 0, (tmp_path / "node1.log").read_text()[-3000:]
        finally:
            if node1.poll() is None:
                node1.kill()
    assert versions(ddp_project, "classify") - before == {result.version}
    params = MlflowClient(ddp_project.tracking_uri).get_run(result.run_id).data.params
    assert (params["world_size"], params["num_nodes_used"], params["devices_per_node"]) == ("2", "2", "1")
    assert "node 1's training processes finished" in (tmp_path / "node1.log").read_text()
