"""What the model sees (lesson 6): the classifier's class activation maps, exported to ONNX and drawn over the photo."""

from __future__ import annotations

import asyncio
import base64
import io
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from models.export import export_onnx
from models.inputs import InvalidInput
from models.onnx_model import make_session
from models.registry import get_serving, get_task
from models.serving import Limits
from models.tasks.classify.explain import INFERNO, colormap, display_size, overlay
from models.tasks.classify.recipe import Explained, top_losses


def resnet(classes: int = 3) -> torch.nn.Module:
    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None, num_classes=classes).eval()


def test_the_maps_average_to_the_logits_and_onnx_runtime_computes_the_same(tmp_path: Path) -> None:
    net = resnet()
    x = torch.randn(2, 3, 64, 64)
    logits, cam = Explained(net)(x)
    assert cam.shape == (2, 3, 2, 2)
    torch.testing.assert_close(logits, net(x))
    torch.testing.assert_close(cam.mean(dim=(2, 3)) + net.fc.bias, logits, atol=1e-5, rtol=1e-5)

    task = get_task("classify")
    spec = {"image_size": 64, "classes": ["a", "b", "c"], "mean": [0.5] * 3, "std": [0.25] * 3}
    path = export_onnx(task, Explained(net), spec, (x.numpy(),), tmp_path / "model.onnx")
    session = make_session(path.read_bytes(), accelerate=False)
    assert [o.name for o in session.get_outputs()] == ["logits", "cam"]
    for batch in (x, x[:1]):
        got_logits, got_cam = session.run(None, {"image": batch.numpy()})
        want_logits, want_cam = Explained(net)(batch)
        np.testing.assert_allclose(got_logits, want_logits.detach().numpy(), atol=1e-4, rtol=1e-3)
        np.testing.assert_allclose(got_cam, want_cam.detach().numpy(), atol=1e-4, rtol=1e-3)


def test_the_heatmap_is_hot_where_the_map_is_and_has_the_photos_shape() -> None:
    photo = Image.new("RGB", (300, 150), (128, 128, 128))
    cam = np.zeros((4, 4))
    cam[0, 3] = 5.0  # evidence in the top-right corner
    out = overlay(photo, cam)
    assert out.size == display_size(300, 150) == (448, 224)  # the shorter side brought up to 224, aspect kept
    arr = np.asarray(out, dtype=np.float32)
    top_right, bottom_left = arr[:20, -20:].mean(axis=(0, 1)), arr[-20:, :20].mean(axis=(0, 1))
    assert top_right.sum() > bottom_left.sum() + 150  # bright yellow over the grey, against near-black
    assert display_size(4000, 3000) == (512, 384) and display_size(28, 28) == (224, 224)
    assert colormap(np.array([0.0, 1.0])).tolist() == INFERNO[[0, -1]].astype(int).tolist()
    flat = np.asarray(overlay(photo, np.ones((4, 4))), dtype=np.float32)  # a flat map carries no evidence
    assert np.ptp(flat.reshape(-1, 3), axis=0).max() == 0


def test_top_losses_come_from_the_trained_network(mirror: Path) -> None:
    task = get_task("classify")
    data = task.load(mirror, task.config("tiny"))
    net = resnet(len(data.spec["classes"]))
    with torch.no_grad():
        output = net(torch.from_numpy(data.valid_x[0])).numpy()
    fig = top_losses(net, data, output, k=4)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    losses = torch.nn.functional.cross_entropy(torch.from_numpy(output), torch.from_numpy(data.valid_y), reduction="none")
    worst = float(losses.max())
    assert len(titles) == 4 and titles[0].split("\n")[1].startswith(f"{worst:.2f}/")


class LogitsOnly:
    """A model version exported before the maps: one output."""

    version = "3"
    output_names = ["logits"]

    def run_outputs(self, names: list[str], *inputs: np.ndarray) -> list[np.ndarray]:
        raise AssertionError("not reached")


def test_explain_on_a_version_without_maps_is_a_clear_400(tmp_path: Path) -> None:
    from services.runtime import TaskRunner

    spec = {"image_size": 28, "classes": ["3", "7"], "mean": [0.1] * 3, "std": [0.3] * 3}
    hooks = get_serving("classify")(spec, Limits())
    prepared = hooks.endpoints()["classify"].prepare(**hooks.examples(tmp_path)["classify"])
    assert prepared.outputs == ("cam",)
    runner = object.__new__(TaskRunner)
    runner.task, runner.model = "classify", LogitsOnly()
    with pytest.raises(InvalidInput, match=r"classify version 3 has no 'cam' output.*explain=true") as caught:
        asyncio.run(runner._outputs(prepared))
    assert caught.value.status == 400


def test_the_answer_carries_the_top_classs_map(tmp_path: Path) -> None:
    spec = {"image_size": 28, "classes": ["3", "7"], "mean": [0.1] * 3, "std": [0.3] * 3}
    hooks = get_serving("classify")(spec, Limits())
    ep = hooks.endpoints()["classify"]
    prepared = ep.prepare(**hooks.examples(tmp_path)["classify"])
    cam = np.zeros((1, 2, 4, 4), dtype=np.float32)
    cam[0, 1, 3, 0] = 1.0  # class "7" (the top one) looks bottom-left; class "3" top-right
    cam[0, 0, 0, 3] = 1.0
    answer = ep.answer(prepared, [np.array([[0.0, 2.0]], dtype=np.float32), cam], "7")
    assert answer.predictions[0].label == "7"
    heat = np.asarray(Image.open(io.BytesIO(base64.b64decode(answer.heatmap_png))), dtype=np.float32)
    assert heat[-10:, :10].sum() > heat[:10, -10:].sum()
    plain = ep.prepare(**{**hooks.examples(tmp_path)["classify"], "explain": False})
    assert plain.outputs == () and ep.answer(plain, [np.array([[0.0, 2.0]], dtype=np.float32)], "7").heatmap_png is None


def test_a_version_that_adds_the_maps_passes_the_signature_gate_and_one_that_drops_them_does_not() -> None:
    from pipelines.promotion import same_signature

    inputs = [{"name": "image", "dtype": "float32", "shape": ["batch", 3, 28, 28]}]
    logits = {"name": "logits", "dtype": "float32", "shape": ["batch", 2]}
    cam = {"name": "cam", "dtype": "float32", "shape": ["batch", 2, "cam_height", "cam_width"]}
    old, new = {"inputs": inputs, "outputs": [logits]}, {"inputs": inputs, "outputs": [logits, cam]}
    assert same_signature(old, new) == (True, "inputs and outputs match the champion's; adds output(s) cam")
    assert same_signature(new, old)[0] is False
    bigger = {"inputs": [{**inputs[0], "shape": ["batch", 3, 32, 32]}], "outputs": [logits, cam]}
    assert same_signature(new, bigger)[0] is False
