"""Text preprocessing for ``sentiment``: fast.ai's tokenizer rules and a vocabulary.

The one implementation that the training loader and the HTTP service both call.
Pure Python, deterministic, no network, no pickles: the vocabulary travels as a
list of strings in the model's JSON spec.

The rules are fast.ai's ``defaults.text_proc_rules``, applied in its order to
the raw string, then a word split that follows spaCy's English rules closely
enough for a classifier (punctuation split off, ``don't`` -> ``do n't``,
``it's`` -> ``it 's``):

* ``fix_html``: ``<br />`` and HTML entities;
* ``replace_rep``: a character repeated 3+ times -> ``xxrep <n> <c>``;
* ``replace_wrep``: a word repeated 3+ times -> ``xxwrep <n> <word>``;
* spaces around ``/``, ``#`` and ``\\``, runs of spaces collapsed;
* ``replace_all_caps``: ``GREAT`` -> ``xxup great`` (words of 2+ letters);
* ``replace_maj``: ``Great`` -> ``xxmaj great``;
* lower-casing, and ``xxbos`` at the start of every text.

Unknown words become ``xxunk``; ``xxpad`` pads a batch on the right.
"""

from __future__ import annotations

import html
import re
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

UNK, PAD, BOS, EOS, FLD, TK_REP, TK_WREP, TK_UP, TK_MAJ = "xxunk xxpad xxbos xxeos xxfld xxrep xxwrep xxup xxmaj".split()
SPECIAL_TOKENS = [UNK, PAD, BOS, EOS, FLD, TK_REP, TK_WREP, TK_UP, TK_MAJ]
"""Always the first entries of a vocabulary, in this order: ``xxunk`` is 0, ``xxpad`` is 1."""
UNK_ID, PAD_ID, BOS_ID = 0, 1, 2

_re_rep = re.compile(r"(\S)(\1{2,})")
_re_wrep = re.compile(r"(?:\s|^)(\w+)\s+((?:\1\s+)+)\1(\s|\W|$)")
_re_spec = re.compile(r"([/#\\])")
_re_space = re.compile(" {2,}")
_re_all_caps = re.compile(r"(\s|^)([A-Z]+[^a-z\s]*)(?=(\s|$))")
_re_maj = re.compile(r"(\s|^)([A-Z][^A-Z\s]*)(?=(\s|$))")
_re_word = re.compile(
    r"""
      [^\W_]+(?=n't\b)                   # do|n't, ca|n't, is|n't
    | n't\b
    | '(?:s|re|ve|ll|d|m)\b              # it|'s, we|'re, i|'m
    | \d+(?:,\d{3})+(?:\.\d+)?           # 1,000.5
    | [^\W_]+(?:\.[^\W_]+)*              # words, numbers, 3.5, u.s
    | \.{2,} | -{2,}                     # ... and --
    | \S                                 # any other character on its own
    """,
    re.VERBOSE,
)


def fix_html(text: str) -> str:
    """fast.ai's ``fix_html``: the messy bits seen in IMDb reviews."""
    text = (
        text.replace("#39;", "'")
        .replace("amp;", "&")
        .replace("#146;", "'")
        .replace("nbsp;", " ")
        .replace("#36;", "$")
        .replace("\\n", "\n")
        .replace("quot;", "'")
        .replace("<br />", "\n")
        .replace('\\"', '"')
        .replace("<unk>", UNK)
        .replace(" @.@ ", ".")
        .replace(" @,@ ", ",")
        .replace(" @-@ ", "-")
    )
    return html.unescape(text)


def replace_rep(text: str) -> str:
    """``cccc`` -> `` xxrep 4 c ``."""
    return _re_rep.sub(lambda m: f" {TK_REP} {len(m.group(2)) + 1} {m.group(1)} ", text)


def replace_wrep(text: str) -> str:
    """``word word word`` -> `` xxwrep 3 word ``."""
    return _re_wrep.sub(lambda m: f" {TK_WREP} {len(m.group(2).split()) + 2} {m.group(1)} {m.group(3)}", text)


def spec_add_spaces(text: str) -> str:
    return _re_spec.sub(r" \1 ", text)


def rm_useless_spaces(text: str) -> str:
    return _re_space.sub(" ", text)


def replace_all_caps(text: str) -> str:
    """``GREAT`` -> ``xxup great`` (a single capital letter is left to :func:`replace_maj`)."""

    def sub(m: re.Match[str]) -> str:
        marker = f"{TK_UP} " if len(m.group(2)) > 1 else ""
        return f"{m.group(1)}{marker}{m.group(2).lower()}"

    return _re_all_caps.sub(sub, text)


def replace_maj(text: str) -> str:
    """``Great`` -> ``xxmaj great``."""

    def sub(m: re.Match[str]) -> str:
        marker = f"{TK_MAJ} " if len(m.group(2)) > 1 else ""
        return f"{m.group(1)}{marker}{m.group(2).lower()}"

    return _re_maj.sub(sub, text)


RULES = (fix_html, replace_rep, replace_wrep, spec_add_spaces, rm_useless_spaces, replace_all_caps, replace_maj)


def tokenize(text: str) -> list[str]:
    """One text -> tokens: the rules above, lower-casing, ``xxbos``, then the word split."""
    for rule in RULES:
        text = rule(text)
    return [BOS, *_re_word.findall(text.lower())]


def make_vocab(token_lists: Iterable[Sequence[str]], max_vocab: int = 60000, min_freq: int = 3) -> list[str]:
    """The special tokens, then every token seen ``min_freq`` times or more, most frequent first.

    Ties are broken alphabetically so the same texts always give the same
    vocabulary; at most ``max_vocab`` entries in all.
    """
    counts: Counter[str] = Counter()
    for tokens in token_lists:
        counts.update(tokens)
    words = sorted((w for w, c in counts.items() if c >= min_freq and w not in SPECIAL_TOKENS), key=lambda w: (-counts[w], w))
    return [*SPECIAL_TOKENS, *words][: max(max_vocab, len(SPECIAL_TOKENS))]


class Numericalizer:
    """Tokens <-> ids with a fixed vocabulary; unknown tokens -> ``xxunk`` (0)."""

    def __init__(self, vocab: Sequence[str]) -> None:
        if list(vocab[: len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS:
            raise ValueError(f"a vocabulary starts with the special tokens {SPECIAL_TOKENS}")
        self.vocab = list(vocab)
        self.stoi = {w: i for i, w in enumerate(self.vocab)}

    def __len__(self) -> int:
        return len(self.vocab)

    def ids(self, tokens: Iterable[str]) -> list[int]:
        return [self.stoi.get(t, UNK_ID) for t in tokens]

    def tokens(self, ids: Iterable[int]) -> list[str]:
        return [self.vocab[i] for i in ids]


def clip_tokens(ids: list[int], max_tokens: int) -> list[int]:
    """At most ``max_tokens`` ids: the first (``xxbos``) and the last ``max_tokens - 1``.

    Reviews tend to end with their verdict, so a long text keeps its end.
    """
    if len(ids) <= max_tokens:
        return ids
    return [ids[0], *ids[len(ids) - (max_tokens - 1) :]] if max_tokens > 1 else ids[:1]


def encode(text: str, numericalizer: Numericalizer, max_tokens: int) -> tuple[list[int], bool]:
    """One text -> at most ``max_tokens`` ids (see :func:`clip_tokens`) and whether it was cut.

    Training and serving both call this. Only the last ``64 * max_tokens``
    characters are read, so a huge text costs no more than a long one (and is
    flagged as cut).
    """
    max_chars = 64 * max_tokens
    cut = len(text) > max_chars
    ids = numericalizer.ids(tokenize(text[-max_chars:] if cut else text))
    return clip_tokens(ids, max_tokens), cut or len(ids) > max_tokens


def bucket_length(n: int, bucket: int, max_tokens: int) -> int:
    """``n`` rounded up to a multiple of ``bucket`` (so requests of similar lengths batch together), at most ``max_tokens``."""
    return max(1, min(max_tokens, -(-n // bucket) * bucket))


def pad_right(ids: Sequence[Sequence[int]], length: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Id lists -> ``tokens`` int64 (batch, length) padded on the right with ``xxpad``, and ``lengths`` int64 (batch,)."""
    lengths = np.asarray([len(x) for x in ids], dtype=np.int64)
    length = int(length if length is not None else (lengths.max() if len(ids) else 1))
    out = np.full((len(ids), length), PAD_ID, dtype=np.int64)
    for row, x in zip(out, ids):
        row[: min(len(x), length)] = x[:length]
    return out, np.minimum(lengths, length)
