"""Transfer learning as lesson 1 teaches it: pretrained backbone weights, then fastai's fine_tune in two stages."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
import torchvision
from safetensors.torch import save_file

from models import pretrained
from models.registry import get_task
from models.tasks.classify.recipe import ClassifyRecipe, layer_groups
from models.training.loop import fit


def body_weights(tmp_path: Path) -> Path:
    """A ResNet-18 state dict made here, standing in for published weights."""
    torch.manual_seed(1)
    path = tmp_path / "resnet18.safetensors"
    save_file(torchvision.models.resnet18(weights=None).state_dict(), str(path))
    return path


def test_fine_tune_trains_head_and_batch_norms_first_then_everything_at_discriminative_rates(tmp_path: Path, mirror: Path) -> None:
    task = get_task("classify")
    weights = body_weights(tmp_path)
    config = task.config("tiny", weights=str(weights), freeze_epochs=1, epochs=1, lr=1e-2)
    data = task.load(mirror, config)
    recipe = task.recipe(config)
    assert isinstance(recipe, ClassifyRecipe)
    stages = recipe.stages(data)

    frozen = next(stages)
    assert frozen.name == "frozen" and frozen.config.epochs == 1
    net = frozen.net
    loaded = {k: v.clone() for k, v in net.state_dict().items()}
    assert torch.equal(loaded["conv1.weight"], pretrained_tensor(weights, "conv1.weight"))  # the file's body, not a fresh one
    groups = recipe.param_groups(net, frozen.config)
    assert [g["lr"] for g in groups] == [1e-3, 1e-3, 1e-2]  # fastai's slice(lr): the head at lr, the body's batch norms a tenth
    assert not net.layer3[0].conv1.weight.requires_grad and net.layer3[0].bn1.weight.requires_grad
    recipe.results["frozen"] = fit(recipe, frozen.data, frozen.config, net=net, progress=False)
    after = net.state_dict()
    assert torch.equal(after["layer4.1.conv2.weight"], loaded["layer4.1.conv2.weight"])  # frozen convolutions stayed
    assert not torch.equal(after["layer4.1.bn2.weight"], loaded["layer4.1.bn2.weight"])  # batch norms trained
    assert not torch.equal(after["fc.weight"], loaded["fc.weight"])  # the head trained

    unfrozen = next(stages)
    assert unfrozen.name == "unfrozen" and unfrozen.net is net and unfrozen.config.lr == pytest.approx(5e-3)
    assert all(p.requires_grad for p in net.parameters())
    rates = [g["lr"] for g in recipe.param_groups(net, unfrozen.config)]
    assert rates == pytest.approx([5e-5, 5e-4, 5e-3])  # lr / lr_mult for the stem ... lr for the head
    assert sum(len(g) for g in layer_groups(net)) == len(list(net.parameters()))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    fit(recipe, unfrozen.data, unfrozen.config, net=net, progress=False)
    assert not torch.equal(net.state_dict()["layer4.1.conv2.weight"], before["layer4.1.conv2.weight"])
    with pytest.raises(StopIteration):
        next(stages)


def test_a_whole_fine_tune_run_keeps_one_learning_curve(tmp_path: Path, mirror: Path) -> None:
    task = get_task("classify")
    config = task.config("tiny", weights=str(body_weights(tmp_path)), freeze_epochs=1, epochs=2)
    recipe = task.recipe(config)
    result = recipe.train(task.load(mirror, config), progress=False)
    assert [row["epoch"] for row in result.history] == [1.0, 2.0, 3.0]
    assert set(recipe.histories) == {"frozen", "unfrozen"}


def pretrained_tensor(path: Path, key: str) -> torch.Tensor:
    from safetensors.torch import load_file

    return load_file(str(path))[key]


def published(tmp_path: Path) -> tuple[Path, str]:
    """A weights file named the way torchvision names its own (``<arch>-<sha256 prefix>.pth``), and its file URL."""
    raw = tmp_path / "raw.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), raw)
    digest = hashlib.sha256(raw.read_bytes()).hexdigest()[:8]
    path = tmp_path / "upstream" / f"resnet18-{digest}.pth"
    path.parent.mkdir()
    raw.replace(path)
    return path, path.as_uri()


def test_imagenet_weights_are_fetched_once_into_the_cache_and_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source, url = published(tmp_path)
    monkeypatch.setattr(pretrained, "imagenet_url", lambda arch: url)
    cache = tmp_path / "cache"
    got = pretrained.imagenet_file("resnet18", cache)
    assert got == cache / "weights" / source.name and got.read_bytes() == source.read_bytes()
    source.unlink()  # the second time comes from the cache, without fetching
    assert pretrained.imagenet_file("resnet18", cache) == got
    got.write_bytes(got.read_bytes()[:-10] + b"0123456789")  # a cached file that changed is refused, not used
    with pytest.raises(pretrained.WeightsCorrupt, match="delete it to fetch it again"):
        pretrained.imagenet_file("resnet18", cache)


def test_a_fetch_whose_hash_is_not_the_published_one_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source, _ = published(tmp_path)
    wrong = source.with_name("resnet18-00000000.pth")
    source.replace(wrong)
    monkeypatch.setattr(pretrained, "imagenet_url", lambda arch: wrong.as_uri())
    with pytest.raises(pretrained.WeightsCorrupt):
        pretrained.imagenet_file("resnet18", tmp_path / "cache")
    assert not list((tmp_path / "cache" / "weights").iterdir())


def test_offline_the_error_says_in_one_line_where_to_put_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pretrained, "imagenet_url", lambda arch: "http://127.0.0.1:9/resnet34-b627a593.pth")
    with pytest.raises(pretrained.WeightsUnavailable) as caught:
        pretrained.imagenet_file("resnet34", tmp_path / "cache")
    message = str(caught.value)
    assert "\n" not in message and str(tmp_path / "cache" / "weights" / "resnet34-b627a593.pth") in message
    assert "download http://127.0.0.1:9/resnet34-b627a593.pth elsewhere" in message


def test_torchvision_publishes_the_urls_and_hashes_the_fetch_checks() -> None:
    url = pretrained.imagenet_url("resnet34")
    assert url.startswith("https://download.pytorch.org/models/resnet34-") and pretrained.HASH_IN_NAME.search(url)
    with pytest.raises(ValueError, match="no ImageNet weights"):
        pretrained.imagenet_url("resnet10")
