"""``text_classifier_learner`` (AWD-LSTM) -> ``sentiment``: its weights in the platform's AWD-LSTM classifier.

fastai's ``SentenceEncoder`` reads a text in ``bptt`` chunks with the LSTM state
carried over, which is one continuous run for a single text: the platform's
exportable classifier (:mod:`models.awd_lstm`) computes the same with the same
weights. The service tokenizes with :mod:`models.text` (fastai's rules and a
word split after spaCy's English rules); where that split differs from
spaCy's, the probes say on which texts and by how much.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.fastai_import import Unsupported
from models.fastai_import.converted import Converted, Probe

PROBE_TEXTS = (
    "This movie was a delight from start to finish: the acting, the music and the story were all wonderful.",
    "A dull, tedious film. The plot made no sense and I walked out before the end.",
    "I didn't expect much, but it's GREAT fun!!! Ten out of ten.",
    "The worst acting I have seen in years... <br /><br />Avoid.",
    "Not bad at all, though the second half drags.",
)


def awd_lstm(learn: Any) -> Any:
    encoder = learn.model[0]
    lstm = getattr(encoder, "module", None)
    if type(encoder).__name__ != "SentenceEncoder" or type(lstm).__name__ != "AWD_LSTM" or type(learn.model[1]).__name__ != "PoolingLinearClassifier":
        raise Unsupported(f"a sentiment Learner is text_classifier_learner(dls, AWD_LSTM), not {type(learn.model).__name__} of {[type(m).__name__ for m in learn.model]}")
    return lstm


def build(learn: Any) -> tuple[Any, dict[str, Any]]:
    """The platform's inference classifier with the Learner's weights, and the spec."""
    from models.awd_lstm import AWDLSTMEncoder, ConcatPoolClassifier

    lstm = awd_lstm(learn)
    vocab, labels = [str(t) for t in learn.dls.vocab[0]], [str(c) for c in learn.dls.vocab[1]]
    if vocab[:2] != ["xxunk", "xxpad"]:
        raise Unsupported(f"the vocabulary does not start with xxunk, xxpad: {vocab[:3]}")
    emb, hidden, layers = int(lstm.emb_sz), int(lstm.n_hid), int(lstm.n_layers)
    ours = AWDLSTMEncoder(len(vocab), emb, hidden, layers, pad_id=1)
    with torch.no_grad():
        ours.embedding.weight.copy_(lstm.encoder.weight)
        for mine, theirs in zip(ours.rnns, lstm.rnns):
            mine.weight_ih_l0.copy_(theirs.module.weight_ih_l0)
            mine.weight_hh_l0.copy_(theirs.weight_hh_l0_raw)
            mine.bias_ih_l0.copy_(theirs.module.bias_ih_l0)
            mine.bias_hh_l0.copy_(theirs.module.bias_hh_l0)
    head = [m for block in learn.model[1].layers for m in block if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.Linear))]
    if [type(m).__name__ for m in head] != ["BatchNorm1d", "Linear", "BatchNorm1d", "Linear"]:
        raise Unsupported(f"the classifier head is not fastai's default (batch norm and linear, twice): {learn.model[1]}")
    net = ConcatPoolClassifier(ours, emb, len(labels), hidden=head[1].out_features, ps=(0.0, 0.0))
    with torch.no_grad():
        for target, source in zip([net.head[0], net.head[2], net.head[4], net.head[6]], head):
            if isinstance(source, torch.nn.BatchNorm1d):
                target.load_state_dict(source.state_dict())
                continue
            target.weight.copy_(source.weight)
            if source.bias is None:  # fastai's LinBnDrop: no bias after a batch norm
                target.bias.zero_()
            else:
                target.bias.copy_(source.bias)
    spec = {"vocab": vocab, "labels": labels, "max_tokens": int(learn.model[0].max_len), "pad_id": 1, "bucket": 32}
    return net.inference_copy(), spec


def fastai_ids(learn: Any, text: str) -> list[int]:
    batch = learn.dls.test_dl([text]).one_batch()
    return [int(i) for i in batch[0][0].tolist()]


def convert(learn: Any, out: Path, data_dir: Path | None = None) -> Converted:
    from models.text import Numericalizer, encode

    net, spec = build(learn)
    numericalizer = Numericalizer(spec["vocab"])
    probes, rows = [], []
    for text in PROBE_TEXTS:
        _, _, probs = learn.predict(text)
        theirs = fastai_ids(learn, text)
        mine, _ = encode(text, numericalizer, spec["max_tokens"])
        expected = {"probabilities": {label: float(p) for label, p in zip(spec["labels"], probs.tolist())}, "fastai_tokens": numericalizer.tokens(theirs)}
        probes.append(Probe("sentiment", {"texts": [text]}, expected))
        rows.append(theirs)
    with torch.no_grad():  # the same weights compute fastai's answer on fastai's own token ids
        for text, ids, probe in zip(PROBE_TEXTS, rows, probes):
            logits = net(torch.tensor([ids]), torch.tensor([len(ids)]))
            got = torch.softmax(logits, dim=1)[0].tolist()
            want = list(probe.expected["probabilities"].values())
            if max(abs(a - b) for a, b in zip(got, want)) > 1e-4:
                raise Unsupported("the Learner's AWD-LSTM, in the platform's classifier, does not compute what fastai's does")
    longest = max(len(r) for r in rows)
    tokens = np.full((len(rows), longest), 1, dtype=np.int64)
    for i, r in enumerate(rows):
        tokens[i, : len(r)] = r
    lengths = np.asarray([len(r) for r in rows], dtype=np.int64)
    learner = {"model": "AWD_LSTM classifier", "loss": type(learn.loss_func).__name__, "vocab_size": str(len(spec["vocab"]))}
    return Converted(net, spec, (tokens, lengths), probes, learner)
