"""Training ``sentiment``: ULMFiT's two stages, an AWD-LSTM language model then a classifier on its encoder.

Stage 1 (``lm``) trains the language model on every text of the task (no
labels are read), 10% of the texts held out for its perplexity, optionally
from a pretrained language model. Stage 2 (``classifier``) loads that encoder
into the classifier and fine-tunes with discriminative learning rates; with
``gradual_unfreeze`` it is one stage per layer group, the head first.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from models.awd_lstm import AWDLSTMEncoder, ConcatPoolClassifier, LanguageModel
from models.task import Dataset, Spec, TrainConfig
from models.tasks.sentiment import SentimentConfig, lm_stream
from models.text import PAD_ID
from models.training.loop import EpochListener, FitResult
from models.training.recipe import Recipe, Stage, notify

log = logging.getLogger(__name__)
# fast.ai's AWD-LSTM dropouts (awd_lstm_lm_config, awd_lstm_clas_config), scaled by ``drop_mult``.
LM_DROPS = {"output_p": 0.1, "hidden_p": 0.15, "input_p": 0.25, "embed_p": 0.02, "weight_p": 0.2}
CLAS_DROPS = {"output_p": 0.4, "hidden_p": 0.3, "input_p": 0.4, "embed_p": 0.05, "weight_p": 0.5}


def encoder(spec: Spec, config: SentimentConfig, drops: dict[str, float], mult: float) -> AWDLSTMEncoder:
    return AWDLSTMEncoder(
        len(spec["vocab"]),
        config.emb_size,
        config.n_hidden,
        config.n_layers,
        spec.get("pad_id", PAD_ID),
        hidden_p=drops["hidden_p"] * mult,
        input_p=drops["input_p"] * mult,
        embed_p=drops["embed_p"] * mult,
        weight_p=drops["weight_p"] * mult,
    )


def load_pretrained_lm(lm: LanguageModel, path: Path, vocab: list[str]) -> None:
    """Load a safetensors LM (``encoder.*``, ``bias``; metadata ``vocab``: a JSON list) into ``lm``.

    Rows are matched by word: a word of ``vocab`` that the file does not know
    gets the mean embedding (fast.ai's ``match_embeds``). Layer sizes must match.
    """
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        old_vocab = json.loads((f.metadata() or {}).get("vocab", "null") or "null")
        state = {k: f.get_tensor(k) for k in f.keys()}
    if not isinstance(old_vocab, list):
        raise ValueError(f"{path}: no 'vocab' (a JSON list of words) in the safetensors metadata")
    old_emb = state["encoder.embedding.weight"]
    old_bias = state.get("bias", torch.zeros(len(old_vocab)))
    index = {w: i for i, w in enumerate(old_vocab)}
    emb = old_emb.mean(dim=0).repeat(len(vocab), 1)
    bias = torch.full((len(vocab),), float(old_bias.mean()))
    for i, word in enumerate(vocab):
        if word in index:
            emb[i], bias[i] = old_emb[index[word]], old_bias[index[word]]
    state["encoder.embedding.weight"], state["bias"] = emb, bias
    lm.load_state_dict(state)


class LanguageModelRecipe(Recipe):
    """Stage 1: the language model. Its network returns the loss per token, so the kept "output" is small;
    its metric is the perplexity."""

    @property
    def metric_name(self) -> str:
        return "perplexity"

    def metric(self, output: np.ndarray, target: np.ndarray) -> float:
        return float(math.exp(min(float(np.mean(output, dtype=np.float64)), 50.0)))

    def build(self, spec: Spec) -> nn.Module:
        config = self.config
        assert isinstance(config, SentimentConfig)
        lm = LanguageModel(encoder(spec, config, LM_DROPS, config.lm_drop_mult), output_p=LM_DROPS["output_p"] * config.lm_drop_mult)
        if config.pretrained_lm:
            load_pretrained_lm(lm, Path(config.pretrained_lm), spec["vocab"])
        return lm

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return output.mean()

    def data(self, data: Dataset) -> tuple[Dataset, TrainConfig, int]:
        """The language model's data (streams of ``bptt`` tokens), its fit's config, and the held-out text count."""
        config = self.config
        assert isinstance(config, SentimentConfig)
        texts = list(data.extras["lm_texts"])
        order = np.random.default_rng(config.seed).permutation(len(texts))
        n_valid = max(1, int(round(len(texts) * config.lm_valid_pct))) if len(texts) > 1 else 0
        held = set(order[:n_valid].tolist())
        tx, ty = lm_stream([t for i, t in enumerate(texts) if i not in held], config.bptt)
        vx, vy = lm_stream([t for i, t in enumerate(texts) if i in held] or texts, config.bptt)
        fit_config = TrainConfig(
            epochs=config.lm_epochs, batch_size=config.lm_batch_size, lr=config.lm_lr, weight_decay=config.weight_decay, seed=config.seed
        )
        return Dataset((tx, ty), ty, (vx, vy), vy, data.spec), fit_config, n_valid


class SentimentRecipe(Recipe):
    """Stage 2: the concat-pooling classifier, after the language model unless ``lm_stage`` is off."""

    def build(self, spec: Spec) -> nn.Module:
        config = self.config
        assert isinstance(config, SentimentConfig)
        m = config.drop_mult
        return ConcatPoolClassifier(encoder(spec, config, CLAS_DROPS, m), config.emb_size, len(spec["labels"]), ps=(CLAS_DROPS["output_p"] * m, 0.1 * m))

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(output, target)

    def param_groups(self, net: nn.Module, config: TrainConfig) -> list[dict[str, Any]]:
        """Discriminative rates: the head at ``lr``, each group below it ``lr_decay`` times smaller."""
        assert isinstance(net, ConcatPoolClassifier) and isinstance(net.encoder, AWDLSTMEncoder)
        decay = getattr(config, "lr_decay", 1.0)
        groups = [*net.encoder.layer_groups(), list(net.head.parameters())]
        out = []
        for depth, params in enumerate(reversed(groups)):
            trainable = [p for p in params if p.requires_grad]
            if trainable:
                out.append({"params": trainable, "lr": config.lr / decay**depth})
        return out

    def stages(self, data: Dataset) -> Iterator[Stage]:
        config = self.config
        assert isinstance(config, SentimentConfig)
        if not config.lm_stage and not config.gradual_unfreeze:
            yield Stage("classifier", self, data, config, checkpoints="classifier")  # built after the seed
            return
        # The first weights of both networks come from the run's seed, whatever ran before in this process.
        L.seed_everything(config.seed, workers=True, verbose=False)
        net = self.build(data.spec)
        assert isinstance(net, ConcatPoolClassifier)
        if config.lm_stage:
            lm_recipe = LanguageModelRecipe(self.task, config)
            lm_data, lm_config, n_valid = lm_recipe.data(data)
            lm = lm_recipe.build(data.spec)
            yield Stage("lm", lm_recipe, lm_data, lm_config, net=lm, checkpoints="lm", log_prefix="lm_")
            self.report["lm_perplexity"] = self.results["lm"].metric
            log.info("language model: perplexity %.1f on %d held-out texts", self.results["lm"].metric, n_valid)
            net.encoder.load_state_dict(lm.encoder.state_dict())
        if not config.gradual_unfreeze:
            yield Stage("classifier", self, data, config, net=net, checkpoints="classifier")
            return
        # ULMFiT's gradual unfreezing: the head, then one more layer group per stage, then everything.
        groups = [*net.encoder.layer_groups(), list(net.head.parameters())]
        offset = 0
        for stage in range(1, len(groups) + 1):
            for i, params in enumerate(groups):
                for p in params:
                    p.requires_grad_(i >= len(groups) - stage)
            last = stage == len(groups)
            cfg = replace(config, epochs=config.epochs if last else 1, lr=config.lr / (10 if last else 2 ** (stage - 1)))
            name = f"classifier-{stage}"
            yield Stage(name, self, data, cfg, net=net, checkpoints=name, epoch_offset=offset)
            offset += len(self.histories[name])
        for p in net.parameters():
            p.requires_grad_(True)

    def after_fit(self, result: FitResult, data: Dataset, listeners: Sequence[EpochListener]) -> None:
        config = self.config
        assert isinstance(config, SentimentConfig)
        if config.gradual_unfreeze:  # one learning curve over the classifier's stages
            history, offset = [], 0
            for name in [n for n in self.histories if n.startswith("classifier-")]:
                history += [{**row, "epoch": row["epoch"] + offset} for row in self.histories[name]]
                offset += len(self.histories[name])
            result.history = history
        if self.report:
            notify(listeners, {"epoch": float(config.lm_epochs), **self.report})

    def export_module(self, net: nn.Module) -> nn.Module:
        """The same weights on plain ``nn.LSTM`` layers, no dropout (see :mod:`models.awd_lstm`)."""
        return net.inference_copy() if isinstance(net, ConcatPoolClassifier) and isinstance(net.encoder, AWDLSTMEncoder) else net

    def figures(self, data: Dataset, result: FitResult) -> dict[str, Any]:
        history = self.histories.get("lm")
        if not history:
            return {}
        from matplotlib.figure import Figure

        fig = Figure(figsize=(6, 4))
        ax = fig.subplots()
        ax.plot([h["epoch"] for h in history], [h.get("val_perplexity", np.nan) for h in history], marker="o")
        ax.set_xlabel("epoch")
        ax.set_ylabel("held-out perplexity")
        ax.set_title("Language model")
        fig.tight_layout()
        return {"lm_perplexity.png": fig}

    def train(self, data: Dataset, **kwargs: Any) -> FitResult:
        assert isinstance(self.config, SentimentConfig)
        with cpu_threads(self.config.threads):
            return super().train(data, **kwargs)


@contextmanager
def cpu_threads(n: int) -> Iterator[None]:
    """Run with ``n`` torch intra-op threads (0: unchanged), then restore the previous number."""
    before = torch.get_num_threads()
    if n > 0:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
