"""Backbone weights load from safetensors or a weights-only torch file, never by unpickling."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
import torchvision
from safetensors.torch import save_file

from models.registry import get_task
from models.tasks.classify import ClassifyConfig
from models.weights import load_weights

SPEC = {"image_size": 28, "classes": ["a", "b", "c"], "mean": [0.5] * 3, "std": [0.25] * 3}


@pytest.fixture(scope="module")
def source() -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    return torchvision.models.resnet18(weights=None, num_classes=10).state_dict()


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_backbone_weights_are_loaded(tmp_path: Path, source: dict[str, torch.Tensor], suffix: str) -> None:
    path = tmp_path / f"backbone{suffix}"
    if suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in source.items()}, str(path))
    else:
        torch.save(source, path)
    net = get_task("classify").recipe(ClassifyConfig(weights=str(path))).build(SPEC)
    state = net.state_dict()
    assert torch.equal(state["conv1.weight"], source["conv1.weight"])
    assert torch.equal(state["layer4.1.bn2.running_mean"], source["layer4.1.bn2.running_mean"])
    assert state["fc.weight"].shape == (3, 512)  # the head is sized for this task's classes


def test_a_pickled_object_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"

    class Payload:
        def __reduce__(self):  # what an attacker would put in a checkpoint
            return (print, ("pwned",))

    with path.open("wb") as f:
        pickle.dump({"weight": Payload()}, f)
    with pytest.raises(pickle.UnpicklingError):
        load_weights(path)
