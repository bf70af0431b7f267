"""Where a run trains: the config's devices, nodes, strategy and precision resolved on a machine, and their overrides."""

from __future__ import annotations

import pytest
import torch

from models.registry import get_task
from models.settings import DistributedSettings, Settings, SettingsError
from models.training.distributed import plan, torchrun_command
from models.training.loop import unsharded
from pipelines import versions


def test_every_visible_gpu_by_default_and_bf16_where_the_gpu_has_it() -> None:
    config = get_task("classify").config("tiny")
    assert plan(config, gpus=0) == plan(config, gpus=0)
    cpu = plan(config, gpus=0)
    assert (cpu.accelerator, cpu.devices, cpu.strategy, cpu.precision, cpu.distributed) == ("cpu", 1, "auto", "32-true", False)
    node = plan(config, gpus=4, bf16=True)
    assert (node.accelerator, node.devices, node.strategy, node.precision, node.world_size) == ("gpu", 4, "ddp", "bf16-mixed", 4)
    assert plan(config, gpus=2, bf16=False).precision == "16-mixed"
    fsdp = plan(get_task("classify").config("tiny", strategy="fsdp", num_nodes=2), gpus=8, bf16=True)
    assert (fsdp.strategy, fsdp.world_size) == ("fsdp", 16)
    assert plan(config, gpus=1).distributed is False  # one GPU trains in the flow's own process


def test_the_figures_a_run_records_give_the_global_batch() -> None:
    config = get_task("classify").config("tiny", devices=2)
    figures = plan(config, gpus=0).figures(config)
    assert (figures["world_size"], figures["global_batch_size"], figures["strategy_used"]) == ("2", str(2 * config.batch_size), "ddp")
    assert figures["lr_used"] == str(config.lr)


def test_impossible_plans_are_refused() -> None:
    task = get_task("classify")
    with pytest.raises(ValueError, match="has 2 GPU"):
        plan(task.config("tiny", devices=4), gpus=2)
    with pytest.raises(ValueError, match="strategy"):
        plan(task.config("tiny", strategy="horovod"), gpus=0)
    with pytest.raises(ValueError, match="at least 1"):
        plan(task.config("tiny", num_nodes=0), gpus=0)


def test_the_environment_overrides_the_config() -> None:
    d = Settings.from_env({"ZOO_DEVICES": "4", "ZOO_NUM_NODES": "2", "ZOO_STRATEGY": "fsdp", "ZOO_PRECISION": "bf16-mixed", "ZOO_NODE_RANK": "1"}).distributed
    assert d.overrides() == {"devices": 4, "num_nodes": 2, "strategy": "fsdp", "precision": "bf16-mixed"}
    assert d.node_rank == 1 and (d.master_addr, d.master_port) == ("127.0.0.1", 29500)
    assert Settings.from_env({}).distributed.overrides() == {}
    for bad in ({"ZOO_STRATEGY": "horovod"}, {"ZOO_DEVICES": "all"}, {"ZOO_NUM_NODES": "0"}, {"ZOO_PRECISION": "fp8"}):
        with pytest.raises(SettingsError, match=next(iter(bad))):
            Settings.from_env(bad)


def test_torchrun_gets_the_nodes_and_the_meeting_point() -> None:
    config = get_task("classify").config("tiny", devices=4, num_nodes=2)
    node = DistributedSettings(node_rank=1, master_addr="job-0.nodes", master_port=29500)
    cmd = torchrun_command(plan(config, gpus=4, bf16=True), ["--task", "classify"], node)
    assert cmd[1:3] == ["-m", "torch.distributed.run"]
    assert {"--nproc-per-node=4", "--nnodes=2", "--node-rank=1", "--master-addr=job-0.nodes", "--master-port=29500"} <= set(cmd)
    assert cmd[-4:] == ["-m", "models.training.rank", "--task", "classify"]


def test_gathered_validation_shards_come_back_in_order_without_padding() -> None:
    rows, world = 7, 3  # DistributedSampler (unshuffled): rank r gets rows r, r + 3, ... padded to 3 each
    padded = list(range(rows)) + list(range(9 - rows))
    shards = torch.stack([torch.tensor(padded[r::world]) for r in range(world)])
    assert unsharded(shards, rows).tolist() == list(range(rows))


def test_where_a_run_trains_is_not_part_of_its_code_hash() -> None:
    task = get_task("classify")
    base = versions.code_hash(task, task.config("tiny"))
    assert versions.code_hash(task, task.config("tiny", devices=8, num_nodes=2, strategy="fsdp", precision="bf16-mixed")) == base
    assert versions.code_hash(task, task.config("tiny", batch_size=32)) != base


def test_the_node_entry_runs_the_flow_on_node_zero_only(tmp_path) -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "ZOO_HOME": str(tmp_path), "ZOO_NODE_RANK": "0"}
    env.pop("PREFECT__FLOW_RUN_ID", None)
    zero = subprocess.run([sys.executable, "-m", "pipelines.node", sys.executable, "-c", "print('the flow run')"], env=env, capture_output=True, text=True)
    assert (zero.returncode, zero.stdout.strip()) == (0, "the flow run")
    other = subprocess.run([sys.executable, "-m", "pipelines.node", "false"], env={**env, "ZOO_NODE_RANK": "1"}, capture_output=True, text=True)
    assert other.returncode == 2 and "node 1 needs PREFECT__FLOW_RUN_ID" in other.stderr and "Traceback" not in other.stderr


def test_gpu_hosts_load_batches_in_worker_processes_into_pinned_memory() -> None:
    from models.training.loop import loader, loader_workers

    config = get_task("classify").config("tiny")
    assert loader_workers(plan(config, gpus=0)) == 0
    gpu = loader_workers(plan(config, gpus=1, bf16=True))
    assert 1 <= gpu <= 4
    import numpy as np

    fed = loader((np.zeros((8, 3), np.float32),), np.zeros(8, np.int64), 4, True, 0, workers=gpu)
    assert (fed.num_workers, fed.pin_memory, fed.persistent_workers) == (gpu, True, True)
