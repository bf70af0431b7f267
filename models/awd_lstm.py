"""AWD-LSTM (Merity et al., 2017) as fast.ai uses it for ULMFiT (Howard & Ruder, 2018).

* :class:`AWDLSTMEncoder`: embedding with embedding dropout, variational
  ("locked") dropout on the input and between layers, and DropConnect on each
  LSTM's hidden-to-hidden weights. The last layer's size is the embedding
  size, so the language model's decoder can share the embedding matrix.
* :class:`LanguageModel`: the encoder plus a tied decoder; ``forward`` returns
  the per-token negative log-likelihood, so validation outputs stay small.
* :class:`ConcatPoolClassifier`: the encoder plus fast.ai's concat pooling
  (last real step, max and mean over the real steps) and fast.ai's head
  (batch norm, dropout, linear, twice).
  Inputs are padded on the right and the pooling only looks at the real steps.
* :meth:`ConcatPoolClassifier.inference_copy`: the same weights on plain
  ``nn.LSTM`` layers without any dropout: what is exported to ONNX (weight
  dropout reassigns a weight in ``forward`` and has no place in a graph).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


class LockedDropout(nn.Module):
    """Dropout with one mask per sequence, shared by every time step (fast.ai's ``RNNDropout``)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        mask = x.new_empty(x.shape[0], 1, x.shape[2]).bernoulli_(1 - self.p) / (1 - self.p)
        return x * mask


class WeightDropLSTM(nn.Module):
    """One LSTM layer (batch first) with DropConnect on ``weight_hh_l0`` while training.

    The parameters carry ``nn.LSTM``'s names, so :meth:`plain` copies them into
    an ``nn.LSTM`` with ``load_state_dict``.
    """

    def __init__(self, n_in: int, n_out: int, weight_p: float) -> None:
        super().__init__()
        template = nn.LSTM(n_in, n_out, batch_first=True)
        self.n_in, self.n_out, self.weight_p = n_in, n_out, weight_p
        self.weight_ih_l0 = nn.Parameter(template.weight_ih_l0.detach().clone())
        self.weight_hh_l0 = nn.Parameter(template.weight_hh_l0.detach().clone())
        self.bias_ih_l0 = nn.Parameter(template.bias_ih_l0.detach().clone())
        self.bias_hh_l0 = nn.Parameter(template.bias_hh_l0.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w_hh = F.dropout(self.weight_hh_l0, self.weight_p, self.training)
        h0 = x.new_zeros(1, x.shape[0], self.n_out)
        params = [self.weight_ih_l0, w_hh, self.bias_ih_l0, self.bias_hh_l0]
        out, _, _ = torch.lstm(x, (h0, h0), params, True, 1, 0.0, self.training, False, True)
        return out

    def plain(self) -> nn.LSTM:
        lstm = nn.LSTM(self.n_in, self.n_out, batch_first=True)
        lstm.load_state_dict({k: v.detach().clone() for k, v in self.state_dict().items()})
        return lstm


class PlainLSTM(nn.Module):
    """An inference-only LSTM layer (batch first, outputs only): the exportable stand-in for :class:`WeightDropLSTM`.

    In PyTorch it runs ``nn.LSTM``. Under ``torch.onnx.export`` it emits one
    ONNX ``LSTM`` node directly: tracing ``nn.LSTM`` through torch.export runs
    its decomposition (a Python loop over the time steps), which fixes the
    sequence length of the example into the graph.
    """

    def __init__(self, lstm: nn.LSTM) -> None:
        super().__init__()
        self.lstm = lstm
        self.hidden_size = lstm.hidden_size
        h = lstm.hidden_size

        def onnx_order(w: torch.Tensor) -> torch.Tensor:  # PyTorch gates i, f, g, o -> ONNX i, o, f, c
            i, f, g, o = w.detach().split(h, dim=0)
            return torch.cat([i, o, f, g], dim=0)

        self.register_buffer("onnx_w", onnx_order(lstm.weight_ih_l0).unsqueeze(0).clone(), persistent=False)
        self.register_buffer("onnx_r", onnx_order(lstm.weight_hh_l0).unsqueeze(0).clone(), persistent=False)
        bias = torch.cat([onnx_order(lstm.bias_ih_l0), onnx_order(lstm.bias_hh_l0)]).unsqueeze(0).clone()
        self.register_buffer("onnx_b", bias, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.onnx.is_in_onnx_export():
            return self.lstm(x)[0]
        steps = x.transpose(0, 1)  # ONNX LSTM is time-major: (length, batch, features)
        y = torch.onnx.ops.symbolic(
            "LSTM",
            (steps, self.onnx_w, self.onnx_r, self.onnx_b),
            {"hidden_size": self.hidden_size, "direction": "forward"},
            dtype=x.dtype,
            shape=(steps.shape[0], 1, steps.shape[1], self.hidden_size),
        )  # (length, num_directions = 1, batch, hidden)
        return y.squeeze(1).transpose(0, 1)


class AWDLSTMEncoder(nn.Module):
    """Token ids (batch, length) -> outputs of the last LSTM layer (batch, length, emb_size)."""

    def __init__(
        self,
        vocab_size: int,
        emb_size: int,
        n_hidden: int,
        n_layers: int,
        pad_id: int,
        hidden_p: float = 0.15,
        input_p: float = 0.25,
        embed_p: float = 0.02,
        weight_p: float = 0.2,
    ) -> None:
        super().__init__()
        self.embed_p = embed_p
        self.embedding = nn.Embedding(vocab_size, emb_size, padding_idx=pad_id)
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
        sizes = [emb_size] + [n_hidden] * (n_layers - 1) + [emb_size]
        self.rnns = nn.ModuleList([WeightDropLSTM(sizes[i], sizes[i + 1], weight_p) for i in range(n_layers)])
        self.input_dp = LockedDropout(input_p)
        self.hidden_dps = nn.ModuleList([LockedDropout(hidden_p) for _ in range(n_layers - 1)])

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        weight = self.embedding.weight
        if self.training and self.embed_p > 0:  # drop whole words (rows of the embedding)
            mask = weight.new_empty(weight.shape[0], 1).bernoulli_(1 - self.embed_p) / (1 - self.embed_p)
            weight = weight * mask
        return F.embedding(tokens, weight, self.embedding.padding_idx)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.input_dp(self.embed(tokens))
        for i, rnn in enumerate(self.rnns):
            x = rnn(x)
            if i < len(self.hidden_dps):
                x = self.hidden_dps[i](x)
        return x

    def layer_groups(self) -> list[list[nn.Parameter]]:
        """Parameters from the bottom up: the embedding, then each LSTM layer."""
        return [list(self.embedding.parameters()), *[list(r.parameters()) for r in self.rnns]]

    def inference_copy(self) -> "PlainEncoder":
        emb = nn.Embedding(self.embedding.num_embeddings, self.embedding.embedding_dim, padding_idx=self.embedding.padding_idx)
        emb.load_state_dict(self.embedding.state_dict())
        return PlainEncoder(emb, nn.ModuleList([PlainLSTM(r.plain()) for r in self.rnns]))


class PlainEncoder(nn.Module):
    """The encoder without dropout, on ``nn.LSTM``: what ONNX gets."""

    def __init__(self, embedding: nn.Embedding, rnns: nn.ModuleList) -> None:
        super().__init__()
        self.embedding, self.rnns = embedding, rnns

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embedding(tokens)
        for rnn in self.rnns:
            x = rnn(x)
        return x


class LanguageModel(nn.Module):
    """Encoder + decoder tied to the embedding; ``forward(tokens, targets)`` -> NLL per token (batch, length)."""

    def __init__(self, encoder: AWDLSTMEncoder, output_p: float = 0.1) -> None:
        super().__init__()
        self.encoder = encoder
        self.output_dp = LockedDropout(output_p)
        self.bias = nn.Parameter(torch.zeros(encoder.embedding.num_embeddings))

    def logits(self, tokens: torch.Tensor) -> torch.Tensor:
        return F.linear(self.output_dp(self.encoder(tokens)), self.encoder.embedding.weight, self.bias)

    def forward(self, tokens: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits = self.logits(tokens)
        nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="none")
        return nll.view_as(targets)


def concat_pool(out: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """(batch, length, dim) outputs padded on the right -> [last real step, max, mean] (batch, 3 * dim)."""
    steps = out.shape[1]
    lengths = lengths.clamp(min=1, max=steps)
    real = (torch.arange(steps, device=out.device)[None, :] < lengths[:, None]).unsqueeze(-1)
    index = (lengths - 1).view(-1, 1, 1).expand(-1, 1, out.shape[2])
    last = out.gather(1, index).squeeze(1)
    biggest = out.masked_fill(~real, -math.inf).amax(dim=1)
    mean = (out * real).sum(dim=1) / lengths.unsqueeze(1).to(out.dtype)
    return torch.cat([last, biggest, mean], dim=1)


class BatchNorm1d(nn.BatchNorm1d):
    """``nn.BatchNorm1d`` that normalises a training batch of one row with its running statistics instead of failing."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and x.shape[0] == 1:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        return super().forward(x)


class ConcatPoolClassifier(nn.Module):
    """``forward(tokens, lengths)`` -> logits (batch, n_classes)."""

    def __init__(self, encoder: nn.Module, emb_size: int, n_classes: int, hidden: int = 50, ps: tuple[float, float] = (0.4, 0.1)) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = nn.Sequential(
            BatchNorm1d(3 * emb_size),
            nn.Dropout(ps[0]),
            nn.Linear(3 * emb_size, hidden),
            nn.ReLU(),
            BatchNorm1d(hidden),
            nn.Dropout(ps[1]),
            nn.Linear(hidden, n_classes),
        )
        self.emb_size, self.n_classes, self.hidden = emb_size, n_classes, hidden

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.head(concat_pool(self.encoder(tokens), lengths))

    def inference_copy(self) -> "ConcatPoolClassifier":
        """The same weights on plain ``nn.LSTM`` layers, no dropout, in eval mode."""
        assert isinstance(self.encoder, AWDLSTMEncoder)
        copy = ConcatPoolClassifier(self.encoder.inference_copy(), self.emb_size, self.n_classes, self.hidden, (0.0, 0.0))
        copy.head.load_state_dict(self.head.state_dict())
        return copy.eval()
