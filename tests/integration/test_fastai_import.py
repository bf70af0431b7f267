"""``zoo import fastai``: Learners trained here with fastai itself, imported, promoted, served by a real ``bentoml serve``,
answering as ``learn.predict`` does on inputs the Learners never saw; and a ``.pkl`` is read only as the rules say."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from conftest import live_server, make_project, project_env
from PIL import Image

from models.settings import Settings

pytestmark = pytest.mark.slow
TOLERANCE = 1e-3


@dataclass
class Imported:
    settings: Settings
    env: dict[str, str]
    url: str
    vision: Any
    unet: Any
    text: Any
    tabular: Any
    collab: Any
    ratings: Any
    files: dict[str, Path]
    versions: dict[str, str]


def train_vision(mirror: Path, out: Path) -> Any:
    """A tiny vision_learner on mnist_tiny: fastai's default Resize (centre crop at inference), ImageNet normalisation."""
    from fastai.vision.all import ImageDataLoaders, Normalize, Resize, accuracy, imagenet_stats, resnet18, vision_learner

    dls = ImageDataLoaders.from_folder(
        mirror / "mnist_tiny", train="train", valid="valid", item_tfms=Resize(32), batch_tfms=Normalize.from_stats(*imagenet_stats), bs=64, num_workers=0
    )
    learn = vision_learner(dls, resnet18, pretrained=False, metrics=accuracy)
    with learn.no_bar(), learn.no_logging():
        learn.fit_one_cycle(1, 3e-3)
    learn.export(out)
    return learn


def train_unet(mirror: Path, out: Path) -> Any:
    """A tiny unet_learner on camvid_tiny at half its size, squished."""
    from fastai.vision.all import Resize, SegmentationDataLoaders, get_image_files, resnet18, unet_learner

    root = mirror / "camvid_tiny"
    codes = [line.strip() for line in (root / "codes.txt").read_text().splitlines() if line.strip()]
    dls = SegmentationDataLoaders.from_label_func(
        root, fnames=get_image_files(root / "images"), label_func=lambda p: root / "labels" / f"{p.stem}_P{p.suffix}", codes=codes,
        item_tfms=Resize((48, 64), method="squish"), bs=8, num_workers=0, seed=3,
    )
    learn = unet_learner(dls, resnet18, pretrained=False, n_out=len(codes))
    with learn.no_bar(), learn.no_logging():
        learn.fit_one_cycle(1, 1e-3)
    learn.export(out)
    return learn


def train_text(mirror: Path, out: Path) -> Any:
    """A tiny text_classifier_learner (AWD-LSTM, 2 layers) on imdb_sample's training texts, from scratch."""
    import pandas as pd
    from fastai.text.all import AWD_LSTM, TextDataLoaders, awd_lstm_clas_config, text_classifier_learner

    texts = pd.read_csv(mirror / "imdb_sample" / "texts.csv")
    dls = TextDataLoaders.from_df(texts, text_col="text", label_col="label", valid_col="is_valid", bs=32, seq_len=72, num_workers=0)
    config = {**awd_lstm_clas_config, "emb_sz": 32, "n_hid": 64, "n_layers": 2}
    learn = text_classifier_learner(dls, AWD_LSTM, pretrained=False, config=config, drop_mult=0.5)
    with learn.no_bar(), learn.no_logging():
        learn.fit_one_cycle(1, 1e-2)
    learn.export(out)
    return learn


def train_tabular(data_dir: Path, out: Path) -> Any:
    """A tiny tabular_learner on the service's own sales features (course_frames), log sales in a sigmoid range."""
    import pandas as pd
    from fastai.tabular.all import Categorify, FillMissing, Normalize, TabularPandas, tabular_learner

    from models.tasks.sales.course import course_frames

    train, valid, cat_names, cont_names = course_frames(data_dir)
    frame = pd.concat([train, valid], ignore_index=True)
    splits = (list(range(len(train))), list(range(len(train), len(frame))))
    to = TabularPandas(frame, [Categorify, FillMissing, Normalize], cat_names, cont_names, y_names="Sales", splits=splits)
    learn = tabular_learner(to.dataloaders(bs=512), layers=[100, 50], y_range=(0.0, float(train["Sales"].max() * 1.2)))
    with learn.no_bar(), learn.no_logging():
        learn.fit_one_cycle(1, 3e-3)
    learn.export(out)
    return learn


def train_collab(mirror: Path, out: Path) -> tuple[Any, Any]:
    import pandas as pd
    from fastai.collab import CollabDataLoaders, collab_learner

    ratings = pd.read_csv(mirror / "movie_lens_sample" / "ratings.csv")
    dls = CollabDataLoaders.from_df(ratings, bs=64, valid_pct=0.2, seed=7)
    learn = collab_learner(dls, n_factors=8, y_range=(0, 5.5))
    with learn.no_bar(), learn.no_logging():
        learn.fit_one_cycle(2, 5e-3)
    learn.export(out)
    return learn, ratings


def zoo(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory, mirror: Path) -> Iterator[Imported]:
    from pipelines import ingest, promotion
    from pipelines.fastai_import import import_fastai

    root = tmp_path_factory.mktemp("fastai")
    env = make_project(root / "project", mirror)
    files = {"vision": root / "vision.pkl", "unet": root / "unet.pkl", "text": root / "text.pkl", "tabular": root / "tabular.pkl", "collab": root / "collab.pkl"}
    vision = train_vision(mirror, files["vision"])
    unet = train_unet(mirror, files["unet"])
    text = train_text(mirror, files["text"])
    collab, ratings = train_collab(mirror, files["collab"])
    with project_env(env) as settings:
        ingest.ingest(settings, ["mnist_tiny", "movie_lens_sample", "camvid_tiny", "imdb_sample", "rossmann_sample"])
        tabular = train_tabular(settings.project_root / "data", files["tabular"])
        done = zoo(env, "import", "fastai", str(files["vision"]), "--task", "classify", "--trust-pickle", "--reason", "from the notebook", "--json")
        assert done.returncode == 0, done.stderr
        versions = {"classify": json.loads(done.stdout)["version"]}
        versions["recommend"] = import_fastai(settings, files["collab"], "recommend", reason="from the notebook", trust_pickle=True).version
        versions["segment"] = import_fastai(settings, files["unet"], "segment", reason="from the notebook", trust_pickle=True).version
        versions["sentiment"] = import_fastai(settings, files["text"], "sentiment", reason="from the notebook", trust_pickle=True).version
        versions["sales"] = import_fastai(settings, files["tabular"], "sales", reason="from the notebook", trust_pickle=True).version
        for task, version in versions.items():
            promotion.promote(settings, task, version, reason="imported from fastai")
        with live_server(settings, root / "serve.log", env={"ZOO_TASKS": "classify,recommend,sales,segment,sentiment"}) as url:
            yield Imported(settings, env, url, vision, unet, text, tabular, collab, ratings, files, versions)


def unseen_images(mirror: Path, folder: Path) -> list[Path]:
    """mnist_tiny's unlabelled test digits, and photos of other shapes and modes (the centre crop at work)."""
    folder.mkdir(exist_ok=True)
    photos = sorted((mirror / "mnist_tiny" / "test").glob("*.png"))[:8]
    street = sorted((mirror / "camvid_tiny" / "images").iterdir())[0]
    with Image.open(street) as img:
        img.save(folder / "wide.png")
        img.convert("L").rotate(90, expand=True).save(folder / "tall-grey.png")
        img.convert("RGBA").resize((50, 20)).save(folder / "strip-rgba.png")
    return [*photos, folder / "wide.png", folder / "tall-grey.png", folder / "strip-rgba.png"]


def test_served_classify_answers_as_learn_predict_does(imported: Imported, mirror: Path, tmp_path: Path) -> None:
    import bentoml

    classes = [str(c) for c in imported.vision.dls.vocab]
    for photo in unseen_images(mirror, tmp_path):
        _, _, probs = imported.vision.predict(photo)
        r = httpx.post(f"{imported.url}/classify", files={"image": (photo.name, photo.read_bytes(), "image/png")}, data={"k": "2"}, timeout=60)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["model_version"] == imported.versions["classify"] == r.headers["x-model-version"]
        served = {p["label"]: p["probability"] for p in body["predictions"]}
        assert max(abs(served[c] - float(p)) for c, p in zip(classes, probs)) < TOLERANCE, photo.name
        assert body["predictions"][0]["label"] == classes[int(probs.argmax())], photo.name
    with bentoml.SyncHTTPClient(imported.url, timeout=60) as client:
        assert client.classify(image=photo, k=1)["predictions"][0]["label"] == classes[int(imported.vision.predict(photo)[2].argmax())]
    r = httpx.post(f"{imported.url}/classify", files={"image": ("x.png", photo.read_bytes(), "image/png")}, data={"explain": "true"}, timeout=60)
    assert r.status_code == 400 and "has no 'cam' output" in r.json()["error"]  # a fastai head has no class activation maps


def test_served_masks_are_fastais(imported: Imported, mirror: Path) -> None:
    import base64
    import io

    from fastai.data.transforms import RandomSplitter
    from fastai.vision.all import get_image_files

    photos = get_image_files(mirror / "camvid_tiny" / "images")
    _, held_out = RandomSplitter(seed=3)(photos)  # the photos the unet_learner did not train on (the loaders' split)
    worst = 0.0
    for i in list(held_out)[:6]:
        photo = photos[i]
        mask = np.asarray(imported.unet.predict(photo)[0], dtype=np.uint8)
        r = httpx.post(f"{imported.url}/segment", files={"image": (photo.name, photo.read_bytes(), "image/png")}, timeout=60)
        assert r.status_code == 200, r.text
        served = np.asarray(Image.open(io.BytesIO(base64.b64decode(r.json()["mask_png"]))))
        with Image.open(photo) as img:
            expected = np.asarray(Image.fromarray(mask).resize(img.size, Image.Resampling.NEAREST))  # fastai answers at the model's size
        worst = max(worst, float(np.mean(served != expected)))
    assert worst <= TOLERANCE  # at most 0.1% of the pixels (argmax ties of float noise)


def test_served_sentiment_answers_as_fastai_does_where_the_tokens_agree(imported: Imported, mirror: Path) -> None:
    import pandas as pd

    from models.fastai_import.text import fastai_ids
    from models.text import Numericalizer, encode

    texts = pd.read_csv(mirror / "imdb_sample" / "texts.csv")
    held_out = texts[texts["is_valid"]]["text"].tolist()[:20]  # the Learner's validation texts: never trained on
    vocab = [str(t) for t in imported.text.dls.vocab[0]]
    numericalizer = Numericalizer(vocab)
    same = 0
    for i in range(0, len(held_out), 5):
        batch = held_out[i : i + 5]
        r = httpx.post(f"{imported.url}/sentiment", json={"texts": batch}, timeout=60)
        assert r.status_code == 200, r.text
        for text, served in zip(batch, r.json()["predictions"]):
            label, _, probs = imported.text.predict(text)
            if fastai_ids(imported.text, text) != encode(text, numericalizer, 1440)[0]:
                continue  # spaCy's split and the service's differ on this text: docs/fastai.md says how often, and by how much
            same += 1
            assert served["label"] == label
            assert abs(served["probability"] - float(probs.max())) < TOLERANCE
    assert same >= 5


def test_served_forecasts_are_fastais_on_the_validation_weeks(imported: Imported) -> None:
    from models.tasks.sales.course import course_frames, platform_spec

    data = imported.settings.project_root / "data"
    _, _, valid_rows = platform_spec(data)
    _, valid, _, _ = course_frames(data)  # the weeks the Learner validated on, never trained on
    picked = valid_rows.reset_index(drop=True).sample(n=30, random_state=1)
    preds, _ = imported.tabular.get_preds(dl=imported.tabular.dls.test_dl(valid.iloc[picked.index].drop(columns=["Sales"])))
    records = [
        {"Store": int(r.Store), "Date": str(r.Date.date()), "Open": 1, "Promo": int(r.Promo), "StateHoliday": str(r.StateHoliday), "SchoolHoliday": int(r.SchoolHoliday)}
        for r in picked.itertuples()
    ]
    r = httpx.post(f"{imported.url}/sales", json={"records": records}, timeout=60)
    assert r.status_code == 200, r.text
    served = np.log([p["sales"] for p in r.json()["predictions"]])
    assert np.max(np.abs(served - preds.numpy().ravel())) < TOLERANCE  # log sales: within 0.1%


def test_served_ratings_answer_as_fastai_does_on_its_validation_pairs(imported: Imported) -> None:
    from fastai.data.transforms import RandomSplitter

    _, held_out = RandomSplitter(valid_pct=0.2, seed=7)(imported.ratings)  # the split CollabDataLoaders.from_df made
    valid = imported.ratings.iloc[held_out][["userId", "movieId"]]
    preds, _ = imported.collab.get_preds(dl=imported.collab.dls.test_dl(valid))
    body = {"user_ids": valid["userId"].tolist(), "movie_ids": valid["movieId"].tolist()}
    r = httpx.post(f"{imported.url}/rate", json=body, timeout=60)
    assert r.status_code == 200, r.text
    served = np.asarray([x["rating"] for x in r.json()["ratings"]])
    assert len(served) == len(valid) >= 50
    assert np.max(np.abs(served - preds.numpy().ravel())) < TOLERANCE
    user = int(valid["userId"].iloc[0])
    top = httpx.post(f"{imported.url}/recommend", json={"user_id": user, "k": 5}, timeout=60).json()
    rated = set(imported.ratings.loc[imported.ratings["userId"] == user, "movieId"])
    assert top["known_user"] and len(top["movies"]) == 5 and not rated & {m["movie_id"] for m in top["movies"]}


def test_the_versions_say_where_they_came_from_and_passed_the_gates(imported: Imported) -> None:
    from models.onnx_model import sha256_file
    from models.store.connect import client
    from pipelines import promotion

    c = client(imported.settings)
    for task, kind in (("classify", "vision"), ("recommend", "collab"), ("segment", "unet"), ("sentiment", "text"), ("sales", "tabular")):
        mv = c.get_model_version(task, imported.versions[task])
        assert mv.tags["source"] == "fastai" and mv.tags["source_sha256"] == sha256_file(imported.files[kind])
        assert c.get_model_version_by_alias(task, "champion").version == mv.version
        run = c.get_run(mv.run_id)
        assert run.data.params["reason"] == "from the notebook" and run.data.metrics["served_max_abs_diff"] < TOLERANCE
        last = promotion.history(imported.settings, task)[-1]
        assert last["version"] == str(mv.version) and all(g["passed"] for g in last["gates"])


class Spy:
    """A "Learner" whose unpickling writes the environment it ran in to a file, then is no Learner at all."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> tuple[Any, ...]:
        code = f"import os, json; open({str(self.target)!r}, 'w').write(json.dumps(dict(os.environ)))"
        return (exec, (code,))


def test_a_pickle_is_read_only_with_trust_pickle_and_without_credentials(imported: Imported, tmp_path: Path) -> None:
    from models.store.connect import client

    marker = tmp_path / "environment.json"
    bad = tmp_path / "learner.pkl"
    bad.write_bytes(pickle.dumps(Spy(marker)))
    before = {t: len(client(imported.settings).search_model_versions(f"name='{t}'")) for t in ("classify", "recommend")}

    refused = zoo(imported.env, "import", "fastai", str(bad), "--task", "classify")
    assert refused.returncode != 0 and "--trust-pickle" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    assert not marker.exists()  # nothing was read

    secrets = {"MLFLOW_TRACKING_PASSWORD": "hunter2", "AWS_SECRET_ACCESS_KEY": "s3cr3t", "ZOO_API_TOKENS": "a-service-token-0123456789"}
    ran = zoo({**imported.env, **secrets}, "import", "fastai", str(bad), "--task", "classify", "--trust-pickle")
    assert ran.returncode != 0 and "failed" in ran.stderr
    seen = json.loads(marker.read_text())  # it ran, in the child process: with none of the registry's or the service's secrets
    assert not {k for k in seen if k.startswith(("MLFLOW", "AWS", "ZOO_", "PG", "DATABASE"))}
    assert {t: len(client(imported.settings).search_model_versions(f"name='{t}'")) for t in ("classify", "recommend")} == before

    broken = zoo({**imported.env, "ZOO_API_TOKENS": "short"}, "import", "fastai", str(bad), "--task", "classify")
    assert broken.returncode == 1 and broken.stderr.startswith("error: ") and "Traceback" not in broken.stderr  # a bad setting: one line

    other = zoo(imported.env, "import", "fastai", str(imported.files["vision"]), "--task", "superres", "--trust-pickle")
    assert other.returncode != 0 and "cannot be imported as superres" in other.stderr
