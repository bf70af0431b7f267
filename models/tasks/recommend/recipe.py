"""Training ``recommend``: the course's ``EmbeddingDotBias``, mean squared error."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from models.task import Dataset, Spec
from models.tasks.recommend import RecommendConfig
from models.training.recipe import Recipe


class EmbeddingDotBias(nn.Module):
    """The course's dot-product model with biases and a sigmoid range."""

    def __init__(self, n_users: int, n_movies: int, n_factors: int, y_range: tuple[float, float]) -> None:
        super().__init__()
        self.u_weight = nn.Embedding(n_users, n_factors, padding_idx=0)
        self.i_weight = nn.Embedding(n_movies, n_factors, padding_idx=0)
        self.u_bias = nn.Embedding(n_users, 1, padding_idx=0)
        self.i_bias = nn.Embedding(n_movies, 1, padding_idx=0)
        for emb in (self.u_weight, self.i_weight):
            nn.init.trunc_normal_(emb.weight, std=0.01)
            with torch.no_grad():
                emb.weight[0].zero_()
        for emb in (self.u_bias, self.i_bias):
            nn.init.zeros_(emb.weight)
        self.y_low, self.y_high = y_range

    def forward(self, user: torch.Tensor, movie: torch.Tensor) -> torch.Tensor:
        dot = (self.u_weight(user) * self.i_weight(movie)).sum(dim=1)
        res = dot + self.u_bias(user).squeeze(1) + self.i_bias(movie).squeeze(1)
        return torch.sigmoid(res) * (self.y_high - self.y_low) + self.y_low


class RecommendRecipe(Recipe):
    def build(self, spec: Spec) -> nn.Module:
        assert isinstance(self.config, RecommendConfig)
        lo, hi = spec["y_range"]
        return EmbeddingDotBias(len(spec["users"]) + 1, len(spec["movies"]) + 1, self.config.n_factors, (lo, hi))

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(output, target.float())

    @torch.no_grad()
    def finalize(self, net: nn.Module, data: Dataset) -> None:
        """Give unknown ids (index 0) the average user's and movie's vector and bias."""
        assert isinstance(net, EmbeddingDotBias)
        for emb in (net.u_weight, net.i_weight, net.u_bias, net.i_bias):
            emb.weight[0] = emb.weight[1:].mean(dim=0)
