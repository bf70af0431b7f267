"""Training ``sales``: the course's tabular model (entity embeddings + MLP), MSE on log sales."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from models.task import Dataset, Spec
from models.tasks.sales import SalesConfig
from models.training.recipe import Recipe


def emb_size(n: int) -> int:
    """fast.ai's rule of thumb for an embedding's width from its vocabulary size."""
    return min(600, round(1.6 * n**0.56))


class TabularModel(nn.Module):
    """The course's tabular model: entity embeddings + normalised continuous -> MLP -> sigmoid range."""

    def __init__(
        self,
        cardinalities: list[int],
        n_cont: int,
        layers: tuple[int, ...],
        ps: tuple[float, ...],
        emb_drop: float,
        y_range: tuple[float, float],
        y_start: float | None = None,
    ) -> None:
        super().__init__()
        self.embeds = nn.ModuleList(nn.Embedding(n, emb_size(n)) for n in cardinalities)
        for emb in self.embeds:
            nn.init.trunc_normal_(emb.weight, std=0.01)
        self.emb_drop = nn.Dropout(emb_drop)
        self.bn_cont = nn.BatchNorm1d(n_cont)
        n_in = sum(e.embedding_dim for e in self.embeds) + n_cont
        blocks: list[nn.Module] = []
        for n_out, p in zip(layers, ps):
            blocks += [nn.Linear(n_in, n_out), nn.ReLU(), nn.BatchNorm1d(n_out)]
            if p:
                blocks.append(nn.Dropout(p))
            n_in = n_out
        blocks.append(nn.Linear(n_in, 1))
        self.layers = nn.Sequential(*blocks)
        self.y_low, self.y_high = y_range
        if y_start is not None:  # start at the typical target, not mid-range: no epochs lost climbing out of the sigmoid
            share = min(max((y_start - self.y_low) / (self.y_high - self.y_low), 1e-3), 1 - 1e-3)
            with torch.no_grad():
                blocks[-1].bias.fill_(math.log(share / (1 - share)))

    def forward(self, cats: torch.Tensor, conts: torch.Tensor) -> torch.Tensor:
        x = torch.cat([emb(cats[:, i]) for i, emb in enumerate(self.embeds)], dim=1)
        x = torch.cat([self.emb_drop(x), self.bn_cont(conts)], dim=1)
        return (torch.sigmoid(self.layers(x)) * (self.y_high - self.y_low) + self.y_low).squeeze(1)


class SalesRecipe(Recipe):
    def build(self, spec: Spec) -> nn.Module:
        config = self.config
        assert isinstance(config, SalesConfig)
        cards = [len(spec["vocab"][c]) + 1 for c in spec["cat_names"]]
        lo, hi = spec["y_range"]
        return TabularModel(
            cards, len(spec["cont_names"]), config.layers, config.dropout, config.emb_dropout, (lo, hi), spec.get("y_mean")
        )

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(output, target.float())

    @torch.no_grad()
    def finalize(self, net: nn.Module, data: Dataset) -> None:
        """Give the unknown index of every embedding the average of the known rows (it is never trained)."""
        assert isinstance(net, TabularModel)
        for emb in net.embeds:
            emb.weight[0] = emb.weight[1:].mean(dim=0)
