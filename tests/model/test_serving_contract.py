"""The serving contract, over every registered task: hooks on their example requests give the declared inputs and responses.

No model is trained: the spec comes from the task's loader on fake data, and the
model's outputs are zeros of the declared output shape. Runs with PyTorch made
unimportable, as the services do.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pydantic import BaseModel

from models.registry import get_serving, get_task, task_names
from models.serving import Limits


def outputs_for(task_name: str, spec: dict, inputs: tuple[np.ndarray, ...]) -> dict[str, np.ndarray]:
    """Zeros shaped like each of the task's outputs for these inputs (named axes as the inputs have them, others 3)."""
    task = get_task(task_name)
    sizes: dict[str, int] = {"batch": len(inputs[0])}
    for tensor, array in zip(task.inputs(spec), inputs):
        sizes.update({d: n for d, n in zip(tensor.shape, array.shape) if isinstance(d, str)})
    if "height" in sizes and "out_height" not in sizes:
        scale = int(spec.get("scale", 1))
        sizes.update(out_height=sizes["height"] * scale, out_width=sizes["width"] * scale)
    return {out.name: np.zeros([sizes.get(d, 3) if isinstance(d, str) else d for d in out.shape], dtype=out.dtype) for out in task.outputs(spec)}


@pytest.mark.parametrize("name", task_names())
def test_every_endpoint_prepares_the_declared_inputs_and_answers_its_schema(name: str, mirror: Path, tmp_path: Path) -> None:
    task = get_task(name)
    spec = task.load(mirror, task.config("tiny")).spec
    hooks = get_serving(name)(spec, Limits())
    endpoints = hooks.endpoints()
    examples = hooks.examples(tmp_path)
    assert set(examples) == set(endpoints), "an example request for every endpoint"
    from services.compose import task_api

    assert set(task_api(name).endpoints()) == set(endpoints), "the service file has one API per endpoint of the hooks"
    declared = task.inputs(spec)
    for endpoint, request in examples.items():
        ep = endpoints[endpoint]
        prepared = ep.prepare(**request)
        assert prepared.count >= 1
        outputs = []
        for group in prepared.inputs:
            assert len(group) == len(declared)
            for tensor, array in zip(declared, group):
                assert array.dtype == np.dtype(tensor.dtype), (endpoint, tensor)
                assert array.ndim == len(tensor.shape) and all(isinstance(d, str) or d == n for d, n in zip(tensor.shape, array.shape))
            named = outputs_for(name, spec, group)
            out = next(iter(named.values()))
            if prepared.outputs:  # the runner's unbatched call: the first output and the named ones
                assert len(prepared.inputs) == 1 and set(prepared.outputs) <= set(named)
                outputs = [out, *(named[n] for n in prepared.outputs)]
                continue
            if prepared.sink is not None:
                prepared.sink(len(outputs), out)
            outputs.append(out)
        answer = ep.answer(prepared, [] if prepared.sink is not None else outputs, "7")
        if isinstance(answer, BaseModel):
            assert answer.model_dump()["model_version"] == "7"
            type(answer).model_validate_json(answer.model_dump_json())  # the response is its own schema
        else:
            assert isinstance(answer, bytes) and answer[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("name", task_names())
def test_every_task_has_a_service_file_and_the_zoo_serves_it(name: str) -> None:
    from pipelines.serving import service_target
    from services.compose import task_api
    from services.zoo import Zoo

    api = task_api(name)
    module, attr = service_target(name).split(":")
    service = getattr(__import__(module, fromlist=[attr]), attr)
    assert set(service.apis) <= set(Zoo.apis)
    assert {api.endpoints()[n] for n in service.apis if n != "feedback"} == {name}  # /feedback: every service's
    assert "feedback" in service.apis
    assert service_target(None) == "services.zoo:Zoo"


def test_the_services_import_and_build_without_torch() -> None:
    code = (
        "import sys\n"
        "for m in ('torch', 'torchvision', 'lightning'): sys.modules[m] = None\n"
        "import services.zoo, models.registry\n"
        "for t in models.registry.task_names(): models.registry.get_serving(t)\n"
        "print(sorted(services.zoo.Zoo.apis))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "'rate'" in proc.stdout and "'superres'" in proc.stdout
