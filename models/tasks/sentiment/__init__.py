"""``sentiment``: IMDb review polarity with ULMFiT (lesson 4, Howard & Ruder 2018).

Sample data: ``imdb_sample/texts.csv`` (``label``, ``text``, ``is_valid``: its own split).
Real data: the full IMDb folders (``train/{pos,neg}``, ``test/{pos,neg}`` = the
validation split, ``unsup/`` = texts for the language model only).

Training has two stages (:class:`models.tasks.sentiment.recipe.SentimentRecipe`):

1. an AWD-LSTM language model (tied decoder) on every text of the task, the
   validation reviews included (no labels are read), 10% of the texts held out
   for its perplexity; optionally started from pretrained weights
   (``pretrained_lm``: a safetensors file, see :func:`~models.tasks.sentiment.recipe.load_pretrained_lm`);
2. a classifier on that encoder, concat pooling over the real steps of
   right-padded inputs, fine-tuned with discriminative learning rates (each
   layer group below the head at ``lr / lr_decay**depth``), optionally with
   gradual unfreezing.

Texts longer than ``max_tokens`` keep ``xxbos`` and their last ``max_tokens - 1``
tokens: reviews tend to end with their verdict.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from models.maths import softmax
from models.task import Dataset, PromotionPolicy, Spec, Task, TensorSpec, TrainConfig
from models.text import PAD_ID, Numericalizer, clip_tokens, encode, make_vocab, pad_right, tokenize

if TYPE_CHECKING:
    from models.training.recipe import Recipe

LABELS_FULL_IMDB = {"neg": "negative", "pos": "positive"}
MIN_PER_CLASS = 5


@dataclass(frozen=True)
class SentimentConfig(TrainConfig):
    dataset: str = "imdb_sample"
    max_vocab: int = 60000
    min_freq: int = 3
    max_tokens: int = 512
    """Tokens per text the classifier reads (and the service: longer texts are cut and flagged)."""
    bucket: int = 32
    """The service pads each request to a multiple of this, so requests of similar lengths batch together."""
    emb_size: int = 200
    n_hidden: int = 256
    n_layers: int = 2
    drop_mult: float = 0.5
    """Scales fast.ai's classifier dropouts."""
    lm_drop_mult: float = 0.3
    """Scales fast.ai's language-model dropouts."""
    # stage 1: the language model
    lm_stage: bool = True
    lm_epochs: int = 8
    lm_lr: float = 3e-3
    lm_batch_size: int = 64
    bptt: int = 70
    lm_valid_pct: float = 0.1
    lm_max_tokens: int | None = None
    """Cut each text to this many tokens (the end kept, like the classifier) for the LM; None: whole texts."""
    pretrained_lm: str | None = None
    """A safetensors language model to start from (its vocabulary in the file's metadata)."""
    # stage 2: the classifier (epochs, batch_size, lr, weight_decay of TrainConfig)
    lr_decay: float = 2.6
    """Discriminative learning rates: each layer group below the head gets ``lr / lr_decay**depth``."""
    gradual_unfreeze: bool = False
    """Unfreeze one layer group per epoch from the top (the ULMFiT textbook), then ``epochs`` on everything."""
    no_lm_baseline: bool = True
    """Also train the same classifier without the language-model stage, as a logged baseline."""
    threads: int = 1
    """torch intra-op threads while training on the CPU (0: torch's default). These small LSTMs
    train faster on one thread than on two, and several times faster on a shared machine."""


def read_texts(root: Path) -> tuple[list[str], list[str], list[bool], list[str]]:
    """``(texts, labels, is_valid, unlabelled)`` from ``texts.csv`` or the full IMDb folders."""
    if (root / "texts.csv").is_file():
        texts, labels, valid = [], [], []
        with (root / "texts.csv").open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = {"label", "text", "is_valid"} - set(reader.fieldnames or [])
            if missing:
                raise ValueError(f"{root / 'texts.csv'} lacks columns {sorted(missing)}")
            for row in reader:
                texts.append(row["text"] or "")
                labels.append((row["label"] or "").strip())
                valid.append(_truthy(row["is_valid"]))
        return texts, labels, valid, []
    if (root / "train").is_dir():
        texts, labels, valid = [], [], []
        for split, is_valid in (("train", False), ("test", True)):
            for folder, label in sorted(LABELS_FULL_IMDB.items()):
                for path in sorted((root / split / folder).glob("*.txt")):
                    texts.append(path.read_text(encoding="utf-8", errors="replace"))
                    labels.append(label)
                    valid.append(is_valid)
        unsup = [p.read_text(encoding="utf-8", errors="replace") for p in sorted((root / "unsup").glob("*.txt"))]
        return texts, labels, valid, unsup
    raise FileNotFoundError(f"{root}: neither texts.csv nor the IMDb folders train/ and test/")


def _truthy(value: str | None) -> bool:
    v = (value or "").strip().lower()
    if v in ("true", "1", "yes"):
        return True
    if v in ("false", "0", "no", ""):
        return False
    raise ValueError(f"is_valid must be True or False, got {value!r}")


def lm_stream(token_lists: list[list[int]], bptt: int) -> tuple[np.ndarray, np.ndarray]:
    """Texts -> one stream of ids -> (inputs, next-token targets), each (rows, bptt)."""
    stream = np.fromiter((i for ids in token_lists for i in ids), dtype=np.int64)
    rows = max((len(stream) - 1) // bptt, 0)
    x = stream[: rows * bptt].reshape(rows, bptt)
    y = stream[1 : rows * bptt + 1].reshape(rows, bptt)
    return x, y


class Sentiment(Task):
    name = "sentiment"
    datasets = ("imdb_sample",)
    metric_name = "accuracy"
    higher_is_better = True
    config_class = SentimentConfig
    promotion = PromotionPolicy(tolerance=0.01, latency_budget_ms=150.0)
    # Dynamic INT8 is opt-in (ZOO_QUANTIZE=1): it quantizes activations per call, so the services run
    # an INT8 model one review per call ("rows_alone"), trading batching for latency (docs/tasks.md, sentiment).
    quantize_ops = ("LSTM", "MatMul", "Gemm")
    quantize_max_change = 0.01
    parity_atol = 2e-4
    parity_rtol = 1e-3
    configs = {
        "demo": {
            "epochs": 8,
            "batch_size": 32,
            "lr": 3e-3,
            "weight_decay": 0.01,
            "seed": 42,
            "max_vocab": 4000,
            "min_freq": 3,
            "max_tokens": 384,
            "emb_size": 200,
            "n_hidden": 256,
            "n_layers": 2,
            "lm_epochs": 8,
            "lm_lr": 2e-3,
            "lm_batch_size": 32,
            "bptt": 70,
            "lm_max_tokens": 384,
            "lr_decay": 1.0,
        },
        "tiny": {
            "epochs": 2,
            "batch_size": 16,
            "lr": 1e-2,
            "limit": 64,
            "max_vocab": 200,
            "min_freq": 1,
            "max_tokens": 48,
            "bucket": 16,
            "emb_size": 16,
            "n_hidden": 24,
            "n_layers": 2,
            "drop_mult": 0.1,
            "lm_epochs": 1,
            "lm_lr": 1e-2,
            "lm_batch_size": 16,
            "bptt": 16,
            "lr_decay": 2.0,
        },
    }

    # ----------------------------------------------------------------- data

    def validate(self, data_dir: Path, config: TrainConfig) -> list[str]:
        """Columns, labels (two or more, enough of each), a validation split, no empty text."""
        assert isinstance(config, SentimentConfig)
        root = data_dir / config.dataset
        if not root.is_dir():
            return [f"{root} does not exist"]
        try:
            texts, labels, valid, _ = read_texts(root)
        except (FileNotFoundError, ValueError, OSError, csv.Error) as exc:
            return [str(exc)]
        problems = []
        train_labels = [lab for lab, v in zip(labels, valid) if not v]
        classes = sorted(set(train_labels))
        if len(classes) < 2:
            problems.append(f"training data has {len(classes)} label(s); at least 2 are needed")
        for label in classes:
            n = train_labels.count(label)
            if n < MIN_PER_CLASS:
                problems.append(f"label {label!r} has {n} training texts; at least {MIN_PER_CLASS} are needed")
        if "" in classes:
            problems.append("some texts have an empty label")
        if not any(valid):
            problems.append("the validation split (is_valid) is empty")
        unknown = sorted({lab for lab, v in zip(labels, valid) if v} - set(classes))
        if unknown:
            problems.append(f"validation labels never seen in training: {unknown}")
        empty = [i for i, t in enumerate(texts) if not t.strip()]
        if empty:
            problems.append(f"{len(empty)} empty text(s), e.g. rows {empty[:5]}")
        return problems

    def absorb(self, data_dir: Path, labelled: list[tuple[Any, list[Any]]]) -> int:
        """Each text of a captured request becomes a training row of ``texts.csv`` with its true label."""
        path = data_dir / self.datasets[0] / "texts.csv"
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: captured texts are added to the IMDb sample's texts.csv")
        rows = [(label, text, False) for captured, labels in labelled for text, label in zip(captured.record["request"]["texts"], labels)]
        with path.open("a", newline="", encoding="utf-8") as out:
            csv.writer(out).writerows(rows)
        return len(rows)

    def load(self, data_dir: Path, config: TrainConfig) -> Dataset:
        assert isinstance(config, SentimentConfig)
        root = data_dir / config.dataset
        texts, labels, valid, unsup = read_texts(root)
        train_idx = [i for i, v in enumerate(valid) if not v]
        valid_idx = [i for i, v in enumerate(valid) if v]
        if config.limit:
            train_idx, valid_idx, unsup = train_idx[: config.limit], valid_idx[: config.limit], unsup[: config.limit]
        classes = sorted({labels[i] for i in train_idx})
        if len(classes) < 2:
            raise ValueError(f"{root}: need at least two labels, found {classes}")
        index = {c: i for i, c in enumerate(classes)}
        valid_idx = [i for i in valid_idx if labels[i] in index]
        tokens = {i: tokenize(texts[i]) for i in (*train_idx, *valid_idx)}
        unsup_tokens = [tokenize(t) for t in unsup]
        # The vocabulary, like the language model, comes from every text of the task (no labels).
        vocab = make_vocab([*tokens.values(), *unsup_tokens], config.max_vocab, config.min_freq)
        spec: Spec = {
            "labels": classes,
            "vocab": vocab,
            "max_tokens": config.max_tokens,
            "bucket": config.bucket,
            "pad_id": PAD_ID,
            "tokenizer": "fastai-rules",
            "truncation": "xxbos + last max_tokens - 1 tokens",
        }
        num = Numericalizer(vocab)

        def arrays(idx: list[int]) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray]:
            ids = [encode(texts[i], num, config.max_tokens)[0] for i in idx]  # what the service does
            length = max((len(x) for x in ids), default=1)
            x, lengths = pad_right(ids, length)
            return (x, lengths), np.asarray([index[labels[i]] for i in idx], dtype=np.int64)

        tx, ty = arrays(train_idx)
        vx, vy = arrays(valid_idx)
        lm_texts = [num.ids(tokens[i]) for i in (*train_idx, *valid_idx)] + [num.ids(t) for t in unsup_tokens]
        if config.lm_max_tokens:
            lm_texts = [clip_tokens(ids, config.lm_max_tokens) for ids in lm_texts]
        extras = {
            "train_texts": [" ".join(tokens[i]) for i in train_idx],
            "valid_texts": [" ".join(tokens[i]) for i in valid_idx],
            "lm_texts": lm_texts,
        }
        return Dataset(tx, ty, vx, vy, spec, extras)

    # -------------------------------------------------------------- training

    def recipe(self, config: TrainConfig) -> "Recipe":
        from models.tasks.sentiment.recipe import SentimentRecipe

        return SentimentRecipe(self, config)

    def metric(self, output: np.ndarray, target: np.ndarray) -> float:
        return float((output.argmax(axis=1) == target).mean())

    # ---------------------------------------------------------- evaluation

    def baseline(self, data: Dataset) -> float:
        """Always predict the most frequent training label."""
        majority = np.bincount(data.train_y).argmax()
        return float((data.valid_y == majority).mean())

    def extra_baselines(self, data: Dataset, config: TrainConfig) -> dict[str, float]:
        """TF-IDF (1-2 grams) + logistic regression on the whole texts, and the same classifier trained without the LM stage."""
        assert isinstance(config, SentimentConfig)
        out = {"tfidf_logreg": tfidf_baseline(data)}
        if config.no_lm_baseline:
            no_lm = replace(config, lm_stage=False, gradual_unfreeze=False)
            out["no_lm"] = self.recipe(no_lm).train(data, progress=False).metric
        return out

    def figures(self, data: Dataset, output: np.ndarray) -> dict[str, Any]:
        from matplotlib.figure import Figure

        from models.plots import confusion_matrix

        labels = data.spec["labels"]
        probs = softmax(output)
        figs: dict[str, Any] = {"confusion_matrix.png": confusion_matrix(data.valid_y, output.argmax(axis=1), labels)}
        fig = Figure(figsize=(6, 4))
        ax = fig.subplots()
        for k, label in enumerate(labels):
            ax.hist(probs[data.valid_y == k, -1], bins=20, range=(0, 1), alpha=0.6, label=f"true {label}")
        ax.set_xlabel(f"predicted probability of {labels[-1]!r}")
        ax.set_ylabel("validation reviews")
        ax.set_title("Predicted probabilities (validation)")
        ax.legend()
        fig.tight_layout()
        figs["probabilities.png"] = fig
        return figs

    # -------------------------------------------------------- export, spec

    def inputs(self, spec: Spec) -> list[TensorSpec]:
        return [TensorSpec("tokens", "int64", ("batch", "length")), TensorSpec("lengths", "int64", ("batch",))]

    def outputs(self, spec: Spec) -> list[TensorSpec]:
        return [TensorSpec("logits", "float32", ("batch", len(spec["labels"])))]

    def reference_sizes(self, spec: Spec) -> dict[str, int]:
        return {"length": int(spec["max_tokens"])}

    def parity_view(self, output: np.ndarray) -> np.ndarray:
        return softmax(output)

    def parity_inputs(self, data: Dataset) -> list[tuple[np.ndarray, ...]]:
        """Batch sizes 1, 3, 7 and up to 32, at the full padded length and at shorter ones."""
        tokens, lengths = data.valid_x
        full = tokens.shape[1]

        def group(n: int, length: int) -> tuple[np.ndarray, np.ndarray]:
            length = max(1, min(length, full))
            return np.ascontiguousarray(tokens[:n, :length]), np.minimum(lengths[:n], length)

        return [group(1, full), group(3, 16), group(7, full // 2 + 5), group(32, full), group(32, 33)]


def tfidf_baseline(data: Dataset) -> float:
    """TF-IDF of word 1-2 grams + logistic regression, fitted on the training split (scikit-learn)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vectorizer = TfidfVectorizer(ngram_range=(1, 2), token_pattern=r"\S+", sublinear_tf=True, lowercase=False)
    model = LogisticRegression(C=10.0, max_iter=2000)
    model.fit(vectorizer.fit_transform(data.extras["train_texts"]), data.train_y)
    return float((model.predict(vectorizer.transform(data.extras["valid_texts"])) == data.valid_y).mean())


TASK = Sentiment()
