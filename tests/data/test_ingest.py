"""Ingest: mirror copies and downloads are atomic, and the DVC hash is deterministic."""

from __future__ import annotations

import http.server
import io
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import make_project

from models.settings import Settings
from pipelines import ingest


def test_same_content_gives_the_same_hash(tmp_path: Path, mirror: Path) -> None:
    hashes = []
    for name in ("a", "b"):
        env = make_project(tmp_path / name, mirror)
        s = Settings.from_env(env)
        hashes.append(ingest.ingest(s))
        assert (Path(s.dvc_remote_url) / "files" / "md5").is_dir()  # pushed to the remote under ZOO_HOME
        assert (s.project_root / "data.dvc").is_file()
    assert hashes[0] == hashes[1]


def test_changed_content_changes_the_hash(tmp_path: Path, mirror: Path) -> None:
    env = make_project(tmp_path / "p", mirror)
    s = Settings.from_env(env)
    before = ingest.ingest(s)
    (s.project_root / "data" / "movie_lens_sample" / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,2,3.0,4\n")
    with ingest.dvc_repo(s.project_root, s) as repo:
        repo.add(str(s.project_root / "data"))
    assert ingest.data_hash(s.project_root) != before


def test_pull_restores_deleted_data_from_the_remote(tmp_path: Path, mirror: Path) -> None:
    import shutil

    env = make_project(tmp_path / "p", mirror)
    s = Settings.from_env(env)
    digest = ingest.ingest(s)
    shutil.rmtree(s.project_root / "data")
    shutil.rmtree(s.home / "dvc-cache")
    version = ingest.pull(s)
    assert version.data_hash == digest
    assert len(version.git_commit) == 40
    assert (s.project_root / "data" / "movie_lens_sample" / "ratings.csv").is_file()


def test_an_s3_remote_is_configuration_alone(tmp_path: Path, mirror: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dvc.repo import Repo

    env = make_project(tmp_path / "p", mirror)
    s = Settings.from_env({**env, "ZOO_DVC_REMOTE": "s3://zoo-data/dvc", "ZOO_DVC_S3_ENDPOINT": "http://minio:9000"})
    with ingest.dvc_repo(s.project_root, s):
        pass
    repo = Repo(str(s.project_root))
    try:
        remote = repo.config["remote"][ingest.REMOTE]
        assert remote["url"] == "s3://zoo-data/dvc"
        assert remote["endpointurl"] == "http://minio:9000"
        assert repo.config["core"]["remote"] == ingest.REMOTE
    finally:
        repo.close()
    # The committed config never learns the production remote: it lives in .dvc/config.local.
    assert "zoo-data" not in (s.project_root / ".dvc" / "config").read_text()


def test_mirror_without_the_dataset_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ingest.IngestError, match="no folder mnist_tiny"):
        ingest.fetch("mnist_tiny", tmp_path / "data", mirror=tmp_path)
    assert not (tmp_path / "data" / "mnist_tiny").exists()


def _tgz(name: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        data = b"userId,movieId,rating,timestamp\n1,2,3.0,4\n"
        info = tarfile.TarInfo(f"{name}/ratings.csv")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture()
def http_server() -> Iterator[tuple[str, dict[str, bytes]]]:
    """A loopback HTTP server serving ``files``; a ``truncate`` entry lies about its length."""
    files: dict[str, bytes] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            body = files.get(self.path.lstrip("/"))
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body) + (100 if self.path.endswith("truncated.tgz") else 0)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", files
    server.shutdown()


def test_download_unpacks_into_place(tmp_path: Path, http_server, monkeypatch: pytest.MonkeyPatch) -> None:
    url, files = http_server
    files["movie_lens_sample.tgz"] = _tgz("movie_lens_sample")
    monkeypatch.setattr(ingest, "SAMPLE_URL", url + "/{name}.tgz")
    got = ingest.fetch("movie_lens_sample", tmp_path / "data", mirror=None)
    assert (got / "ratings.csv").read_text().startswith("userId")
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["movie_lens_sample"]  # no temporary files left


def test_truncated_download_leaves_nothing(tmp_path: Path, http_server, monkeypatch: pytest.MonkeyPatch) -> None:
    url, files = http_server
    files["truncated.tgz"] = _tgz("truncated")
    monkeypatch.setattr(ingest, "SAMPLE_URL", url + "/{name}.tgz")
    with pytest.raises(ingest.IngestError):
        ingest.fetch("truncated", tmp_path / "data", mirror=None)
    assert list((tmp_path / "data").iterdir()) == []


def test_missing_url_is_a_clear_error(tmp_path: Path, http_server, monkeypatch: pytest.MonkeyPatch) -> None:
    url, _ = http_server
    monkeypatch.setattr(ingest, "SAMPLE_URL", url + "/{name}.tgz")
    with pytest.raises(ingest.IngestError, match="cannot download"):
        ingest.fetch("nothing_here", tmp_path / "data", mirror=None)


def test_ingest_and_status_print_json_alone(tmp_path: Path, mirror: Path) -> None:
    """``--json`` output is JSON and nothing else (DVC's own hints stay out of stdout)."""
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, **make_project(tmp_path / "p", mirror)}
    ingest_out = subprocess.run([sys.executable, "-m", "pipelines.cli", "data", "ingest", "--json"], env=env, capture_output=True, text=True, timeout=600)
    assert ingest_out.returncode == 0, ingest_out.stderr
    result = json.loads(ingest_out.stdout)
    assert result["data_hash"].endswith(".dir") and "movie_lens_sample" in result["datasets"]
    status = subprocess.run([sys.executable, "-m", "pipelines.cli", "data", "status", "--json"], env=env, capture_output=True, text=True, timeout=300)
    rows = json.loads(status.stdout)
    assert {r["dataset"] for r in rows} == set(result["datasets"]) and all(r["present"] for r in rows)


def fake_pets(root: Path, breeds: tuple[str, ...] = ("Abyssinian", "beagle", "yorkshire_terrier"), per_breed: int = 10) -> Path:
    """An Oxford-IIIT Pets folder as its tarball unpacks: ``images/<breed>_<n>.jpg`` (and a stray ``.mat``)."""
    from PIL import Image

    images = root / "oxford-iiit-pet" / "images"
    images.mkdir(parents=True)
    for b, breed in enumerate(breeds):
        for n in range(1, per_breed + 1):
            Image.new("RGB", (50 + n, 40), (40 * b, 9 * n, 100)).save(images / f"{breed}_{n}.jpg")
    (images / "Abyssinian_100.mat").write_bytes(b"not an image")
    (root / "oxford-iiit-pet" / "annotations").mkdir()
    return root / "oxford-iiit-pet"


def test_the_pets_config_trains_on_the_full_dataset_fetched_on_request(tmp_path: Path, http_server, monkeypatch: pytest.MonkeyPatch) -> None:
    from models.registry import get_task

    task = get_task("classify")
    pets = task.config("pets")
    assert (pets.dataset, pets.arch, pets.image_size, pets.weights, pets.freeze_epochs) == ("oxford-iiit-pet", "resnet34", 224, "imagenet", 1)
    assert ingest.dataset_url("oxford-iiit-pet") == "https://s3.amazonaws.com/fast-ai-imageclas/oxford-iiit-pet.tgz"
    assert ingest.dataset_url("camvid") == "https://s3.amazonaws.com/fast-ai-imagelocal/camvid.tgz"
    assert get_task("segment").config("camvid").dataset == "camvid"
    assert "oxford-iiit-pet" not in ingest.required_datasets()  # not fetched unless asked for
    assert task.dataset_of(pets) == ("oxford-iiit-pet",)

    data = tmp_path / "data"
    problems = task.validate(data, pets)
    assert problems == [f"{data / 'oxford-iiit-pet'} does not exist: run `zoo data ingest --dataset oxford-iiit-pet` (offline: put its unpacked folder in ZOO_DATA_MIRROR first)"]
    url, files = http_server
    monkeypatch.setattr(ingest, "downloads", lambda: {"oxford-iiit-pet": url + "/pets.tgz"})
    with pytest.raises(ingest.IngestError, match=r"cannot download .*/pets.tgz.*ZOO_DATA_MIRROR.*oxford-iiit-pet/"):
        ingest.fetch("oxford-iiit-pet", data, mirror=None)

    mirror = tmp_path / "mirror"
    fake_pets(mirror)
    got = ingest.fetch("oxford-iiit-pet", data, mirror=mirror)
    small = task.config("pets", image_size=32, weights=None)
    assert task.validate(data, small) == []
    loaded = task.load(data, small)
    assert loaded.spec["classes"] == ["Abyssinian", "beagle", "yorkshire_terrier"]  # names up to _<n>.jpg, underscores kept
    assert len(loaded.valid_y) == 6 and len(loaded.train_y) == 24 and loaded.valid_x[0].shape[1:] == (3, 32, 32)
    assert got == data / "oxford-iiit-pet"


def test_an_unknown_dataset_is_refused_naming_the_known_ones(tmp_path: Path, mirror: Path) -> None:
    s = Settings.from_env(make_project(tmp_path / "p", mirror))
    with pytest.raises(ingest.IngestError, match=r"unknown dataset\(s\) pets; known: .*oxford-iiit-pet"):
        ingest.ingest(s, ["pets"])
