"""Loading refuses what registration does not write: external data (CVE-2022-25882), a malformed spec, a spec unlike its model.

Every artifact here has a correct sha256: the refusals come from what the files say, not from their checksums.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from models.onnx_model import ChecksumError, OnnxModel, UnsafeModel, sha256_file
from models.store.names import MODEL_FILE, SPEC_FILE

SPEC = {"task": "toy", "inputs": [{"name": "x", "dtype": "float32", "shape": ["batch", 4]}], "outputs": [{"name": "y", "dtype": "float32", "shape": ["batch", 4]}]}


def _model(external: str | None = None) -> bytes:
    """y = x + w, with w inside the file, or named as external data at ``external``."""
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.full((1, 4), 2.0, np.float32), "w")
    if external is not None:
        w.ClearField("raw_data")
        w.data_location = TensorProto.EXTERNAL
        for key, value in (("location", external), ("offset", "0"), ("length", "16")):
            entry = w.external_data.add()
            entry.key, entry.value = key, value
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "toy", [x], [y], [w])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def _version(folder: Path, model: bytes, spec: object) -> dict[str, str]:
    """A downloaded version: the two artifacts and their recorded sha256."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MODEL_FILE).write_bytes(model)
    (folder / SPEC_FILE).write_text(spec if isinstance(spec, str) else json.dumps(spec))
    return {name: sha256_file(folder / name) for name in (MODEL_FILE, SPEC_FILE)}


def test_a_self_contained_model_loads(tmp_path: Path) -> None:
    model = OnnxModel.load(tmp_path, _version(tmp_path, _model(), SPEC))
    (y,) = model.session.run(None, {"x": np.zeros((1, 4), np.float32)})
    assert y.tolist() == [[2.0] * 4]


@pytest.mark.parametrize("location", ["weights.bin", "../weights.bin", "../../../../etc/hostname", "/etc/hostname", "sub/../weights.bin"])
def test_external_data_is_refused_wherever_it_points(tmp_path: Path, location: str, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "models" / "toy" / "1"
    secret = np.full(4, 7.0, np.float32).tobytes()
    for where in (folder, folder.parent, tmp_path):  # the file exists beside the model, above it, and in the working directory
        where.mkdir(parents=True, exist_ok=True)
        (where / "weights.bin").write_bytes(secret)
    monkeypatch.chdir(tmp_path)
    checksums = _version(folder, _model(location), SPEC)
    with pytest.raises(UnsafeModel, match="external data"):
        OnnxModel.load(folder, checksums)


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ("{not json", "not JSON"),
        ([1, 2], "task name"),
        ({**SPEC, "task": 5}, "task name"),
        ({**SPEC, "inputs": "x"}, "inputs must be a list"),
        ({**SPEC, "inputs": []}, "inputs must be a list"),
        ({**SPEC, "inputs": [{"name": "x", "dtype": 32, "shape": [1]}]}, r"inputs\[0\] needs a name and a dtype"),
        ({**SPEC, "inputs": [{"name": "x", "dtype": "float99", "shape": [1]}]}, "not a numpy dtype"),
        ({**SPEC, "outputs": [{"name": "y", "dtype": "float32", "shape": "batch"}]}, r"outputs\[0\].shape"),
        ({**SPEC, "outputs": [{"name": "y", "dtype": "float32", "shape": [-1, 4.5]}]}, r"outputs\[0\].shape"),
        ({**SPEC, "reference_sizes": {"height": "96"}}, "reference_sizes"),
        ({**SPEC, "rows_alone": "yes"}, "rows_alone"),
        ({**SPEC, "inputs": [{"name": "image", "dtype": "float32", "shape": ["batch", 4]}]}, "declares inputs and outputs"),
    ],
)
def test_a_malformed_spec_is_refused_before_use(tmp_path: Path, spec: object, field: str) -> None:
    with pytest.raises(UnsafeModel, match=field):
        OnnxModel.load(tmp_path, _version(tmp_path, _model(), spec))


def _scaled_by_the_call() -> bytes:
    """y = x / max|x| over the whole call: like dynamic INT8, a row's answer depends on the rows beside it."""
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])
    nodes = [helper.make_node("Abs", ["x"], ["a"]), helper.make_node("ReduceMax", ["a"], ["m"], keepdims=1), helper.make_node("Div", ["x", "m"], ["y"])]
    return helper.make_model(helper.make_graph(nodes, "scaled", [x], [y]), opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


@pytest.mark.parametrize("alone", [False, True])
def test_a_spec_that_says_rows_alone_runs_each_row_in_its_own_call(tmp_path: Path, alone: bool) -> None:
    model = OnnxModel.load(tmp_path, _version(tmp_path, _scaled_by_the_call(), {**SPEC, "rows_alone": alone}))
    row, big = np.array([[1.0, -2.0, 0.5, 4.0]], np.float32), np.array([[8.0, 0.0, 0.0, 0.0]], np.float32)
    by_itself = model.run(row)
    together = model.run(np.concatenate([row, big, row]))
    assert model.rows_alone is alone and together.shape == (3, 4)
    assert np.array_equal(together[0], by_itself[0]) is alone and np.array_equal(together[2], by_itself[0]) is alone
    assert np.array_equal(together[1], model.run(big)[0])  # the row that sets the scale either way
    (named,) = model.run_outputs(["y"], np.concatenate([row, big]))
    assert np.array_equal(named[0], by_itself[0]) is alone


def test_checksums_still_come_first(tmp_path: Path) -> None:
    checksums = _version(tmp_path, _model("weights.bin"), "{not json")
    checksums[SPEC_FILE] = "0" * 64
    with pytest.raises(ChecksumError):
        OnnxModel.load(tmp_path, checksums)


def test_two_workers_downloading_one_version_at_once_both_get_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The workers of a service start together and fetch the champion into one cache: the one that finishes second
    finds the version's folder there and uses it (it once failed to load, and answered 503 until the next poll)."""
    import mlflow.artifacts

    from models.settings import Settings
    from models.store import reading

    settings = Settings.from_env({"ZOO_HOME": str(tmp_path / "home")})
    dest = settings.cache / "models" / "recommend" / "3"

    def fetch(artifact_uri: str, dst_path: str, tracking_uri: str) -> str:
        name = artifact_uri.rsplit("/", 1)[-1]
        (Path(dst_path) / name).write_text(name)
        if name == "spec.json" and not dest.exists():  # the other worker finishes first
            dest.mkdir(parents=True)
            for other in ("model.onnx", "spec.json"):
                (dest / other).write_text(other)
        return str(Path(dst_path) / name)

    class Client:
        def get_model_version_download_uri(self, name: str, version: str) -> str:
            return f"models:/{name}/{version}"

    class Version:
        name, version = "recommend", "3"

    monkeypatch.setattr(mlflow.artifacts, "download_artifacts", fetch)
    got = reading.download(settings, Client(), Version())  # type: ignore[arg-type]
    assert got == dest and sorted(p.name for p in dest.iterdir()) == ["model.onnx", "spec.json"]
    assert [p.name for p in dest.parent.iterdir()] == ["3"]  # no temporary folder left behind
