"""The sentiment tokenizer (fast.ai's rules), the vocabulary, and the IMDb loaders, on hand-made cases."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from models.tasks.sentiment import TASK, lm_stream, read_texts
from models.text import (
    BOS,
    PAD_ID,
    SPECIAL_TOKENS,
    UNK_ID,
    Numericalizer,
    bucket_length,
    clip_tokens,
    encode,
    make_vocab,
    pad_right,
    tokenize,
)


def test_every_text_starts_with_xxbos_and_is_lower_cased() -> None:
    assert tokenize("hello world") == [BOS, "hello", "world"]
    assert all(t == t.lower() for t in tokenize("Some MIXED Case Words"))


def test_capitalised_words_get_xxmaj() -> None:
    assert tokenize("This movie") == [BOS, "xxmaj", "this", "movie"]
    assert tokenize("I liked it") == [BOS, "i", "liked", "it"]  # one letter: no marker


def test_all_caps_words_get_xxup() -> None:
    assert tokenize("it was GREAT") == [BOS, "it", "was", "xxup", "great"]
    assert tokenize("THE END") == [BOS, "xxup", "the", "xxup", "end"]


def test_repeated_characters_become_xxrep() -> None:
    assert tokenize("wow!!!!") == [BOS, "wow", "xxrep", "4", "!"]
    assert tokenize("sooooo good") == [BOS, "s", "xxrep", "5", "o", "good"]


def test_repeated_words_become_xxwrep() -> None:
    assert tokenize("very very very good") == [BOS, "xxwrep", "3", "very", "good"]
    assert tokenize("very very good") == [BOS, "very", "very", "good"]  # twice is not a repetition


def test_punctuation_contractions_and_html() -> None:
    assert tokenize("Don't go, it's bad.") == [BOS, "xxmaj", "do", "n't", "go", ",", "it", "'s", "bad", "."]
    assert tokenize("good<br /><br />bad") == [BOS, "good", "bad"]
    assert tokenize("rated 7/10 &lt; #1") == [BOS, "rated", "7", "/", "10", "<", "#", "1"]
    assert tokenize("") == [BOS]


def test_the_tokenizer_is_deterministic() -> None:
    text = "A GREAT film!!! I loved it, loved it, loved it. 10/10 <br />Would watch again..."
    assert tokenize(text) == tokenize(text) == tokenize(str(text))


def test_the_vocabulary_has_the_special_tokens_first_then_counts_with_a_cap_and_min_frequency() -> None:
    docs = [["b", "a", "a", "c"], ["a", "b", "d"], ["e"]]
    vocab = make_vocab(docs, max_vocab=100, min_freq=2)
    assert vocab[: len(SPECIAL_TOKENS)] == SPECIAL_TOKENS
    assert vocab[len(SPECIAL_TOKENS) :] == ["a", "b"]  # a: 3, b: 2; c, d, e below min_freq
    assert make_vocab(docs, max_vocab=len(SPECIAL_TOKENS) + 1, min_freq=1)[-1] == "a"
    assert make_vocab(docs, max_vocab=100, min_freq=1)[len(SPECIAL_TOKENS) :] == ["a", "b", "c", "d", "e"]  # ties: alphabetical
    assert make_vocab(list(reversed(docs)), 100, 1) == make_vocab(docs, 100, 1)


def test_unknown_words_become_xxunk_and_padding_is_on_the_right() -> None:
    num = Numericalizer(make_vocab([tokenize("good movie good movie")], min_freq=1))
    ids = num.ids(tokenize("good zebra"))
    assert num.tokens(ids) == [BOS, "good", "xxunk"] and ids[-1] == UNK_ID
    tokens, lengths = pad_right([ids, ids[:1]], 4)
    assert tokens.dtype == np.int64 and lengths.tolist() == [3, 1]
    assert tokens[1].tolist() == [ids[0], PAD_ID, PAD_ID, PAD_ID]
    with pytest.raises(ValueError):
        Numericalizer(["a", "b"])


def test_long_texts_keep_xxbos_and_their_end_and_say_so() -> None:
    num = Numericalizer(make_vocab([tokenize("one two three four five six")], min_freq=1))
    ids, cut = encode("one two three four five six", num, 4)
    assert num.tokens(ids) == [BOS, "four", "five", "six"] and cut
    ids, cut = encode("one two", num, 4)
    assert len(ids) == 3 and not cut
    assert clip_tokens([2, 5, 6], 3) == [2, 5, 6]
    _, cut = encode("one " * 10_000, num, 8)  # more characters than are read: cut too
    assert cut


def test_bucket_lengths() -> None:
    assert [bucket_length(n, 32, 256) for n in (1, 32, 33, 250, 256)] == [32, 32, 64, 256, 256]
    assert bucket_length(20, 32, 24) == 24


def test_the_language_model_stream_is_shifted_by_one() -> None:
    x, y = lm_stream([[2, 10, 11], [2, 12, 13, 14]], bptt=3)
    assert x.tolist() == [[2, 10, 11], [2, 12, 13]]
    assert y.tolist() == [[10, 11, 2], [12, 13, 14]]


def _write_csv(path: Path, rows: list[tuple[str, str, str]]) -> None:
    path.mkdir(parents=True, exist_ok=True)
    with (path / "texts.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["label", "text", "is_valid"])
        w.writerows(rows)


def test_the_sample_loads_with_its_own_split(mirror: Path) -> None:
    cfg = TASK.config("tiny")
    data = TASK.load(mirror, cfg)
    assert data.spec["labels"] == ["negative", "positive"]
    tokens, lengths = data.train_x
    assert tokens.dtype == np.int64 and lengths.dtype == np.int64 and tokens.shape[1] <= cfg.max_tokens
    assert (tokens[:, 0] == 2).all()  # xxbos
    assert all((row[n:] == PAD_ID).all() and (row[:n] != PAD_ID).all() for row, n in zip(tokens, lengths))
    assert len(data.valid_y) > 0 and set(np.unique(data.train_y)) == {0, 1}
    assert TASK.validate(mirror, cfg) == []


def test_full_imdb_folders_load_too(tmp_path: Path) -> None:
    root = tmp_path / "imdb"
    for split in ("train", "test"):
        for folder, word in (("pos", "great"), ("neg", "awful")):
            (root / split / folder).mkdir(parents=True)
            for i in range(6):
                (root / split / folder / f"{i}_7.txt").write_text(f"A {word} film number {i}.")
    (root / "unsup").mkdir()
    (root / "unsup" / "0_0.txt").write_text("An unlabelled review about a film.")
    texts, labels, valid, unsup = read_texts(root)
    assert len(texts) == 24 and sum(valid) == 12 and set(labels) == {"negative", "positive"}
    assert unsup == ["An unlabelled review about a film."]
    cfg = TASK.config("tiny", dataset="imdb", min_freq=1)
    assert TASK.validate(tmp_path, cfg) == []
    data = TASK.load(tmp_path, cfg)
    assert "unlabelled" in data.spec["vocab"]  # the unlabelled texts feed the vocabulary and the LM
    assert len(data.extras["lm_texts"]) == 25


@pytest.mark.parametrize(
    "rows, problem",
    [
        ([("positive", "good", "False")] * 6 + [("positive", "good", "True")], "at least 2"),
        ([("positive", "good", "False")] * 6 + [("negative", "bad", "False")] * 6, "validation split"),
        ([("positive", "good", "False")] * 6 + [("negative", "bad", "False")] * 6 + [("neutral", "meh", "True")], "never seen"),
        ([("positive", "", "False")] * 6 + [("negative", "bad", "False")] * 6 + [("negative", "x", "True")], "empty text"),
        ([("positive", "good", "maybe")], "is_valid"),
    ],
)
def test_validation_reports_bad_data(tmp_path: Path, rows: list[tuple[str, str, str]], problem: str) -> None:
    _write_csv(tmp_path / "imdb_sample", rows)
    problems = TASK.validate(tmp_path, TASK.config("tiny"))
    assert any(problem in p for p in problems), problems
