"""Where the service's tokens differ from fastai's (spaCy's), and what it does to the answers.

    python bench/fastai_tokens.py LEARNER.pkl [TEXTS.csv]

Reads a text_classifier_learner exported with ``learn.export()`` (a pickle: only a
file you made), tokenizes the validation texts of ``TEXTS.csv`` (default: the
mirror's ``imdb_sample/texts.csv``) both ways, runs the Learner's weights on
both token lists, and writes bench/results/fastai_tokens.md.
"""

from __future__ import annotations

import collections
import difflib
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

RESULTS = Path(__file__).parent / "results" / "fastai_tokens.md"


def shown(tokens: list[str]) -> str:
    return " ".join(repr(t)[1:-1] for t in tokens) or "(none)"


def main(pkl: Path, csv: Path) -> str:
    from fastai.text.all import load_learner

    from models.fastai_import.text import build, fastai_ids
    from models.text import Numericalizer, encode

    learn = load_learner(pkl)
    net, spec = build(learn)
    numericalizer = Numericalizer(spec["vocab"])
    frame = pd.read_csv(csv)
    texts = frame[frame["is_valid"]]["text"].tolist()
    identical, diffs, flips, shares, kinds = 0, [], 0, [], collections.Counter()
    with torch.no_grad():
        for text in texts:
            theirs, ours = fastai_ids(learn, text), encode(text, numericalizer, spec["max_tokens"])[0]
            if theirs == ours:
                identical += 1
                continue
            p = [torch.softmax(net(torch.tensor([ids]), torch.tensor([len(ids)])), 1)[0] for ids in (theirs, ours)]
            diffs.append(float((p[0] - p[1]).abs().max()))
            flips += int(p[0].argmax() != p[1].argmax())
            a, b = numericalizer.tokens(theirs), numericalizer.tokens(ours)
            ops = [o for o in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes() if o[0] != "equal"]
            shares.append(sum(max(a1 - a0, b1 - b0) for _, a0, a1, b0, b1 in ops) / len(a))
            kinds.update(f"`{shown(a[a0:a1])}` -> `{shown(b[b0:b1])}`" for _, a0, a1, b0, b1 in ops)
    lines = [
        "# The service's tokens against fastai's",
        "",
        f"`python bench/fastai_tokens.py {pkl.name} {csv.name}`: {len(texts)} validation texts; Learner: AWD-LSTM, "
        f"vocabulary of {len(spec['vocab'])}.",
        "",
        f"- Texts tokenized identically: {identical} of {len(texts)}.",
    ]
    if diffs:
        lines += [
            f"- Texts with some other token: {len(diffs)}; in those, the share of tokens that differ: median {np.median(shares):.2%}, "
            f"at most {max(shares):.2%}.",
            f"- What that does to the answer (largest probability difference): median {np.median(diffs):.3g}, 90th percentile "
            f"{np.percentile(diffs, 90):.3g}, at most {max(diffs):.3g}; another label on {flips} text(s).",
            "",
            "| fastai (spaCy) -> served | times |",
            "| --- | --- |",
            *[f"| {k} | {v} |" for k, v in kinds.most_common(12)],
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    mirror = Path(os.environ.get("ZOO_DATA_MIRROR", "../shared/datasets"))
    report = main(Path(sys.argv[1]), Path(sys.argv[2]) if len(sys.argv) > 2 else mirror / "imdb_sample" / "texts.csv")
    RESULTS.write_text(report)
    print(report)
