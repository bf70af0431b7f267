"""Create the retrain deployments of ``pipelines/schedules.yaml`` on a Prefect work pool.

The same deployments ``zoo schedule`` serves, but run by a worker: each task's
``retrain`` flow with its cron, config and ``auto_promote``, one run at a time.
Runs execute in the checkout ``--source`` (``ZOO_PROJECT_ROOT``, ``/srv/course-zoo``
in the retrain image), which must exist where this script runs: run it in the
retrain image (compose's ``prefect-deploy``, or the Kubernetes worker's pod).
A task's ``gpus`` and ``nodes`` become its deployment's job variables ``gpu_count``
and ``nodes`` (with ``ZOO_NUM_NODES`` in ``env``); ``--job-variable`` wins over them.

    python infra/prefect/deploy.py --pool zoo-process                   # compose: the process worker
    kubectl -n course-zoo exec deploy/prefect-worker -- python infra/prefect/deploy.py --pool zoo-gpu
    ... --pool zoo-gpu --job-variable namespace=course-zoo-staging --job-variable gpu_count=0 \
        --job-variable 'node_selector={}'                                # staging: Jobs on the CPU
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
ENTRYPOINT = "pipelines/flows.py:retrain"


def job_variables(entry: dict[str, Any]) -> dict[str, Any]:
    """The work pool variables a schedule entry sets: ``gpus`` per pod, ``nodes`` pods (and their ``ZOO_NUM_NODES``)."""
    out: dict[str, Any] = {}
    if "gpus" in entry:
        out["gpu_count"] = entry["gpus"]
    if "nodes" in entry:
        out.update(nodes=entry["nodes"], env={"ZOO_NUM_NODES": str(entry["nodes"])})
    return out


def merge_job_variables(own: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``overrides`` (``--job-variable``) over a deployment's own; ``env`` merged name by name."""
    out = {**own, **overrides}
    if isinstance(own.get("env"), dict) and isinstance(overrides.get("env"), dict):
        out["env"] = {**own["env"], **overrides["env"]}
    return out


def deployment_specs(schedules: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Keyword arguments of ``Flow.deploy`` (less the pool) for each scheduled task."""
    return [
        {
            "name": f"retrain-{task}",
            "cron": entry["cron"],
            "timezone": entry.get("timezone", "UTC"),
            "parameters": {"task": task, "config": entry["config"], "auto_promote": bool(entry["auto_promote"]), "progress": False},
            "concurrency_limit": 1,
            "tags": ["course-zoo", task],
            "description": f"Retrain {task} ({entry['config']} config) when its data or code changed.",
            "job_variables": job_variables(entry),
        }
        for task, entry in schedules.items()
    ]


def job_variable(text: str) -> tuple[str, Any]:
    """``KEY=VALUE``; the value is read as JSON when it parses (``0``, ``{}``), else kept as text."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", default=os.environ.get("ZOO_WORK_POOL", "zoo-process"), help="work pool name (default: ZOO_WORK_POOL or zoo-process)")
    parser.add_argument("--source", default=os.environ.get("ZOO_PROJECT_ROOT", "/srv/course-zoo"), help="the checkout the runs execute in")
    parser.add_argument("--job-variable", type=job_variable, action="append", default=[], help="override a work pool variable (KEY=VALUE), repeatable")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(ROOT))
    from prefect import flow
    from prefect.schedules import Cron

    from pipelines.schedule import load_schedules

    retrain = flow.from_source(source=args.source, entrypoint=ENTRYPOINT)
    for spec in deployment_specs(load_schedules()):
        cron, timezone = spec.pop("cron"), spec.pop("timezone")
        retrain.deploy(
            work_pool_name=args.pool,
            job_variables=merge_job_variables(spec.pop("job_variables"), dict(args.job_variable)),
            schedules=[Cron(cron, timezone=timezone)],
            build=False,
            push=False,
            print_next_steps=False,
            ignore_warnings=True,
            **spec,
        )
        print(f"deployment retrain/{spec['name']} on pool {args.pool}: {cron} ({timezone})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
