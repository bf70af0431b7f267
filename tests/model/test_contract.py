"""Contract tests, parametrized over every registered task (timm style), on fake data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from models.export import check_parity, check_task_parity, export_onnx
from models.registry import get_task, task_names
from models.task import Dataset
from models.training.loop import fit, loader, predict
from models.training.recipe import Recipe


@pytest.fixture(scope="module")
def datasets(mirror: Path) -> dict[str, Dataset]:
    return {name: get_task(name).load(mirror, get_task(name).config("tiny")) for name in task_names()}


def recipe_of(name: str, **overrides) -> Recipe:
    task = get_task(name)
    return task.recipe(task.config("tiny", **overrides))


def batch_of(data: Dataset, n: int = 8) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
    return tuple(torch.from_numpy(np.array(a[:n])) for a in data.train_x), torch.from_numpy(np.array(data.train_y[:n]))


@pytest.mark.parametrize("name", task_names())
def test_spec_is_json_and_matches_the_inputs(name: str, datasets: dict[str, Dataset]) -> None:
    task, data = get_task(name), datasets[name]
    spec = json.loads(json.dumps(task.describe(data.spec)))
    assert spec["task"] == name and spec["metric"] == task.metric_name
    assert len(spec["inputs"]) == len(data.train_x)
    for tensor, array in zip(task.inputs(data.spec), data.train_x):
        assert tensor.shape[0] == "batch"
        assert array.dtype == np.dtype(tensor.dtype)
        assert array.ndim == len(tensor.shape)
        for size, axis in zip(array.shape[1:], tensor.shape[1:]):
            assert isinstance(axis, str) or size == axis, (tensor, array.shape)
    named = {d for t in [*spec["inputs"], *spec["outputs"]] for d in t["shape"] if isinstance(d, str)} - {"batch"}
    assert named <= set(spec["reference_sizes"]), f"no reference size for {named - set(spec['reference_sizes'])}"


@pytest.mark.parametrize("name", task_names())
def test_forward_shape_matches_the_output_spec(name: str, datasets: dict[str, Dataset]) -> None:
    task, data = get_task(name), datasets[name]
    recipe = recipe_of(name)
    net = recipe.build(data.spec).eval()
    x, _ = batch_of(data, 5)
    assert isinstance(net(*x), torch.Tensor)  # the training network: the first output alone
    exported = recipe.export_module(net)(*x)  # what is exported: every declared output
    outs = list(exported) if isinstance(exported, tuple) else [exported]
    specs = task.outputs(data.spec)
    assert len(outs) == len(specs)
    for out, spec in zip(outs, specs):
        assert out.shape[0] == 5 and out.ndim == len(spec.shape), spec
        assert all(isinstance(axis, str) or size == axis for size, axis in zip(out.shape[1:], spec.shape[1:]))
        assert out.dtype == torch.float32


@pytest.mark.parametrize("name", task_names())
def test_every_parameter_gets_a_gradient(name: str, datasets: dict[str, Dataset]) -> None:
    data = datasets[name]
    torch.manual_seed(0)
    recipe = recipe_of(name)
    net = recipe.build(data.spec).train()
    x, y = batch_of(data, 16)
    recipe.loss(net(*x), y).backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert not missing, f"no gradient reaches {missing}"


@pytest.mark.parametrize("name", task_names())
def test_overfitting_one_batch_lowers_the_loss(name: str, datasets: dict[str, Dataset]) -> None:
    data = datasets[name]
    torch.manual_seed(0)
    recipe = recipe_of(name)
    net = recipe.build(data.spec).train()
    x, y = batch_of(data, 8)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-2)
    first = None
    for _ in range(40):
        opt.zero_grad()
        loss = recipe.loss(net(*x), y)
        first = first if first is not None else loss.item()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first, (first, loss.item())


@pytest.mark.parametrize("name", task_names())
def test_seeded_runs_are_identical(name: str, datasets: dict[str, Dataset]) -> None:
    task, data = get_task(name), datasets[name]
    cfg = task.config("tiny", epochs=1)
    a = task.recipe(cfg).train(data, progress=False)
    b = task.recipe(cfg).train(data, progress=False)
    assert np.array_equal(a.valid_output, b.valid_output)
    assert a.history == b.history
    assert a.history and f"val_{task.metric_name}" in a.history[-1]


@pytest.mark.parametrize("name", task_names())
def test_onnx_matches_torch_at_other_batch_sizes(name: str, datasets: dict[str, Dataset], tmp_path: Path) -> None:
    task, data = get_task(name), datasets[name]
    torch.manual_seed(0)
    recipe = recipe_of(name)
    net = recipe.build(data.spec).eval()
    module = recipe.export_module(net)
    path = export_onnx(task, module, data.spec, data.train_x, tmp_path / "m.onnx")
    names = [t.name for t in task.inputs(data.spec)]
    result = check_parity(module, path, names, tuple(a[:13] for a in data.valid_x))
    assert result.max_abs_diff < 1e-4 and result.checked == 13


@pytest.mark.parametrize("name", task_names())
def test_the_export_steps_parity_check_passes_on_the_tasks_own_inputs(
    name: str, datasets: dict[str, Dataset], tmp_path: Path
) -> None:
    task, data = get_task(name), datasets[name]
    torch.manual_seed(0)
    recipe = recipe_of(name)
    net = recipe.build(data.spec).eval()
    module = recipe.export_module(net)
    path = export_onnx(task, module, data.spec, data.train_x, tmp_path / "m.onnx")
    groups = task.parity_inputs(data)
    assert len(groups) >= 2 and {len(g[0]) for g in groups} >= {1}
    result = check_task_parity(task, module, path, data.spec, data)
    assert result.max_abs_diff <= task.promotion.max_abs_diff


@pytest.mark.parametrize("name", task_names())
def test_metric_and_baseline_are_on_the_same_split(name: str, datasets: dict[str, Dataset]) -> None:
    task, data = get_task(name), datasets[name]
    base = task.baseline(data)
    assert np.isfinite(base)
    # A network that always outputs the same thing scores like a trivial baseline, not better.
    net = recipe_of(name).build(data.spec)
    out = predict(net, data.valid_x)
    assert out.shape[0] == len(data.valid_y)
    assert np.isfinite(task.metric(out, data.valid_y))


def test_loader_yields_inputs_then_target(datasets: dict[str, Dataset]) -> None:
    data = datasets["recommend"]
    dl = loader(data.train_x, data.train_y, batch_size=4, shuffle=False, seed=0)
    users, movies, ratings = next(iter(dl))
    assert users.dtype == torch.int64 and ratings.shape == (4,)


def test_a_loss_that_stops_being_finite_fails_fast(datasets: dict[str, Dataset], monkeypatch: pytest.MonkeyPatch) -> None:
    from models.training.loop import TrainingDiverged

    recipe = recipe_of("recommend")
    monkeypatch.setattr(type(recipe), "loss", lambda self, out, y: (out * float("nan")).mean())
    with pytest.raises(TrainingDiverged, match="learning rate"):
        fit(recipe, datasets["recommend"], recipe.config, progress=False)


@pytest.mark.parametrize("name", [n for n in task_names() if get_task(n).quantize_ops])
def test_dynamic_int8_quantization_reports_both_metrics_and_follows_the_allowed_change(
    name: str, datasets: dict[str, Dataset], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import onnx

    from models.export import quantize_task

    task, data = get_task(name), datasets[name]
    torch.manual_seed(0)
    recipe = recipe_of(name)
    net = recipe.build(data.spec).eval()
    path = export_onnx(task, recipe.export_module(net), data.spec, data.train_x, tmp_path / "m.onnx")
    q = quantize_task(task, path, data)
    ops = {n.op_type for n in onnx.load(str(q.path)).graph.node}
    assert ops & {"DynamicQuantizeLSTM", "MatMulInteger", "DynamicQuantizeMatMul"}  # INT8 kernels, not float ones
    torch_metric = task.metric(predict(net, data.valid_x), data.valid_y)
    assert q.float_metric == pytest.approx(torch_metric, abs=1e-6)  # the float ONNX model is PyTorch's
    assert 0.0 <= q.max_abs_diff < 0.5 and q.accepted == (
        (q.float_metric - q.int8_metric if task.higher_is_better else q.int8_metric - q.float_metric) <= task.quantize_max_change + 1e-12
    )
    monkeypatch.setattr(type(task), "quantize_max_change", -1.0)  # no change is small enough: the float model stays
    assert not quantize_task(task, path, data).accepted


def test_an_int8_sentiment_model_runs_each_review_alone_so_its_answer_is_the_same_whatever_is_sent_with_it(
    datasets: dict[str, Dataset], tmp_path: Path
) -> None:
    from models.export import quantize_int8
    from models.onnx_model import OnnxModel, make_session
    from models.registry import get_serving
    from models.serving import Limits

    task, data = get_task("sentiment"), datasets["sentiment"]
    torch.manual_seed(0)
    recipe = recipe_of("sentiment")
    path = export_onnx(task, recipe.export_module(recipe.build(data.spec).eval()), data.spec, data.train_x, tmp_path / "m.onnx")
    int8 = quantize_int8(task, path, tmp_path / "m.int8.onnx")
    model = OnnxModel(make_session(int8.read_bytes()), {**task.describe(data.spec), "rows_alone": True})
    hooks = get_serving("sentiment")(data.spec, Limits())
    hooks.rows_alone = model.rows_alone
    endpoint = hooks.endpoints()["sentiment"]
    words = [w for w in data.spec["vocab"] if w.isalpha()][:60]
    review, other, long = " ".join(words[:12]), " ".join(words[12:20]), " ".join(words * 5)

    def probabilities(texts: list[str], batch_mate: list[str] | None = None) -> list[float]:
        prepared = endpoint.prepare(texts=texts)
        assert len(prepared.inputs) == len(texts) and prepared.count == len(texts)  # one model input per text
        outputs = []
        for tokens, lengths in prepared.inputs:
            if batch_mate is not None:  # the micro-batcher joins requests of one shape into one call
                mate_tokens, mate_lengths = endpoint.prepare(texts=batch_mate).inputs[0]
                assert mate_tokens.shape == tokens.shape
                outputs.append(model.run(np.concatenate([tokens, mate_tokens]), np.concatenate([lengths, mate_lengths]))[:1])
            else:
                outputs.append(model.run(tokens, lengths))
        return [p.probability for p in endpoint.answer(prepared, outputs, "1").predictions]

    (alone,) = probabilities([review])
    assert probabilities([review, long])[0] == alone  # not padded to the long text's length
    assert probabilities([long, review, other])[1] == alone
    assert probabilities([review], batch_mate=[other])[0] == alone  # nor scaled with another request's review
    float_model = OnnxModel(make_session(path.read_bytes()), task.describe(data.spec))
    float_hooks = get_serving("sentiment")(data.spec, Limits())
    prepared = float_hooks.endpoints()["sentiment"].prepare(texts=[review])
    float_p = float_hooks.endpoints()["sentiment"].answer(prepared, [float_model.run(*prepared.inputs[0])], "1").predictions[0].probability
    assert abs(float_p - alone) < 0.1  # the INT8 model is still the same model


@pytest.mark.slow
def test_a_registered_int8_model_says_rows_alone_in_its_spec_and_loads_so(datasets: dict[str, Dataset], tmp_path: Path) -> None:
    from mlflow import MlflowClient

    from models.export import quantize_int8
    from models.settings import Settings
    from models.store import reading, writing

    task, data = get_task("sentiment"), datasets["sentiment"]
    recipe = recipe_of("sentiment")
    path = export_onnx(task, recipe.export_module(recipe.build(data.spec).eval()), data.spec, data.train_x, tmp_path / "m.onnx")
    int8 = quantize_int8(task, path, tmp_path / "m.int8.onnx")
    settings = Settings.from_env({"ZOO_HOME": str(tmp_path / "home")})
    c = MlflowClient(settings.tracking_uri, settings.registry_uri)
    run = c.create_run(c.create_experiment("int8"))
    version = writing.register(settings, task, run.info.run_id, int8, data.spec, data.valid_x, {}, rows_alone=True)
    model = reading.load_version(settings, "sentiment", version)
    assert model.rows_alone and json.loads((reading.download(settings, c, c.get_model_version("sentiment", version)) / "spec.json").read_text())["rows_alone"] is True
