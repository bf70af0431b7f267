"""The retrain flow end to end on tiny fake data, in a throw-away ZOO_HOME."""

from __future__ import annotations

import json

import pytest
from conftest import zoo_cli

from models.onnx_model import ChecksumError
from models.settings import Settings
from models.store import connect, names, reading
from pipelines.output import ExitCode

pytestmark = pytest.mark.slow


def test_runs_record_data_and_code_versions(project: Settings) -> None:
    c = connect.client(project)
    for task, metric in (("classify", "accuracy"), ("recommend", "mse")):
        mv = reading.by_alias(c, task, names.CHALLENGER)
        assert mv is not None
        run = c.get_run(mv.run_id)
        assert run.info.status == "FINISHED"
        assert run.data.tags["data_hash"].endswith(".dir")
        assert len(run.data.tags["git_commit"]) == 40
        assert metric in run.data.metrics and f"baseline_{metric}" in run.data.metrics
        assert run.data.metrics["onnx_max_abs_diff"] < 1e-3
        assert [m.step for m in c.get_metric_history(run.info.run_id, "train_loss")] == [1]
        figures = {f.path for f in c.list_artifacts(run.info.run_id, "figures")}
        assert "figures/learning_curves.png" in figures
        assert mv.tags["data_hash"] == run.data.tags["data_hash"]
        assert len(mv.tags["sha256.model.onnx"]) == 64 and len(mv.tags["sha256.spec.json"]) == 64


def test_int8_is_opt_in_and_the_float_sentiment_model_is_registered_by_default(project: Settings) -> None:
    import onnx

    c = connect.client(project)
    mv = reading.by_alias(c, "sentiment", names.CHAMPION)
    run = c.get_run(mv.run_id)
    assert run.data.tags["onnx_quantized"] == "no: dynamic INT8 is opt-in (ZOO_QUANTIZE=1)"
    assert "onnx_int8_accuracy" not in run.data.metrics
    folder = reading.download(project, c, mv)
    ops = {n.op_type for n in onnx.load(str(folder / "model.onnx")).graph.node}
    assert "LSTM" in ops and "DynamicQuantizeLSTM" not in ops
    assert "rows_alone" not in json.loads((folder / "spec.json").read_text())  # the float model batches its reviews


def test_task_figures_are_logged(project: Settings) -> None:
    c = connect.client(project)
    classify = reading.by_alias(c, "classify", names.CHALLENGER)
    recommend = reading.by_alias(c, "recommend", names.CHALLENGER)
    assert {"figures/confusion_matrix.png", "figures/top_losses.png"} <= {f.path for f in c.list_artifacts(classify.run_id, "figures")}
    assert "figures/predicted_vs_actual.png" in {f.path for f in c.list_artifacts(recommend.run_id, "figures")}


def test_registered_model_has_a_signature_and_an_input_example(project: Settings) -> None:
    import mlflow

    mv = reading.by_alias(connect.client(project), "recommend", names.CHAMPION)
    info = mlflow.models.get_model_info(f"models:/recommend/{mv.version}")
    assert [i.name for i in info.signature.inputs.inputs] == ["user", "movie"]
    assert info.saved_input_example_info is not None
    segment = reading.by_alias(connect.client(project), "segment", names.CHAMPION)
    image = mlflow.models.get_model_info(f"models:/segment/{segment.version}").signature.inputs.inputs[0]
    assert image.shape == (-1, 3, -1, -1)  # batch, height and width are dynamic, as in the ONNX model


def test_each_run_records_its_dataset_and_leaves_a_summary_in_prefect(project: Settings) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    c = connect.client(project)
    mv = reading.by_alias(c, "sales", names.CHAMPION)
    (dataset,) = c.get_run(mv.run_id).inputs.dataset_inputs
    assert dataset.dataset.digest == mv.tags["task_data_hash"][:36] and dataset.dataset.source_type == "dvc"
    assert {t.key: t.value for t in dataset.tags}["mlflow.data.context"] == "training"
    with get_client(sync_client=True) as client:
        (artifact,) = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["retrain-sales"])), limit=1)
    assert artifact.type == "markdown" and "rmspe" in artifact.data and "baseline_rmspe" in artifact.data and "ONNX parity" in artifact.data


def test_registered_model_loads_and_is_verified(project: Settings) -> None:
    model = reading.load_alias(project, "recommend", names.CHAMPION)
    assert model.input_names == ["user", "movie"]
    assert model.spec["task"] == "recommend" and "users" in model.spec["preprocess"]


def test_a_tampered_artifact_is_refused(project: Settings, tmp_path) -> None:
    c = connect.client(project)
    mv = reading.by_alias(c, "classify", names.CHAMPION)
    folder = reading.download(project, c, mv)
    copy = tmp_path / "copy"
    copy.mkdir()
    for f in folder.iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    (copy / "spec.json").write_text((copy / "spec.json").read_text().replace("classify", "classifx"))
    from models.onnx_model import OnnxModel

    with pytest.raises(ChecksumError, match="spec.json"):
        OnnxModel.load(copy, reading.checksums(mv))


def test_parity_failure_registers_nothing(project: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    from models.export import ParityError
    from pipelines import flows

    def broken(*args, **kwargs):
        raise ParityError("injected")

    c = connect.client(project)
    before = {v.version for v in c.search_model_versions("name='recommend'")}
    challenger = reading.by_alias(c, "recommend", names.CHALLENGER).version
    monkeypatch.setattr(flows, "check_task_parity", broken)
    with pytest.raises(ParityError):
        flows.retrain("recommend", "tiny", progress=False, force=True)
    assert {v.version for v in c.search_model_versions("name='recommend'")} == before
    assert reading.by_alias(c, "recommend", names.CHALLENGER).version == challenger
    failed = c.search_runs([c.get_experiment_by_name(project.experiment).experiment_id], "attributes.status = 'FAILED'")
    assert failed, "the MLflow run of a failed retrain is marked FAILED"


def test_zoo_models_json_lists_champions(project: Settings) -> None:
    result = zoo_cli("models", "--json")
    assert result.exit_code == 0, result.output
    rows = {row["task"]: row for row in json.loads(result.stdout)}
    assert {"classify", "recommend"} <= set(rows)
    champ = rows["recommend"]["champion"]
    assert champ["version"] and "mse" in champ["metrics"] and "baseline_mse" in champ["metrics"]
    assert champ["data_hash"] and champ["created"]


def test_promote_unknown_version_is_a_clear_error(project: Settings) -> None:
    result = zoo_cli("promote", "recommend", "999", "--reason", "test")
    assert result.exit_code == ExitCode.NOT_FOUND
    assert "error:" in result.stderr and "Traceback" not in result.output


def test_train_unknown_task_is_a_clear_error(project: Settings) -> None:
    result = zoo_cli("train", "nope")
    assert result.exit_code == ExitCode.NOT_FOUND
    assert "unknown task 'nope'" in result.stderr and "Traceback" not in result.output
