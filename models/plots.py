"""Figures logged next to each run (matplotlib, no global pyplot state)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure


def learning_curves(history: list[dict[str, float]], metric: str) -> Figure:
    """Train/validation loss and the validation metric per epoch."""
    fig = Figure(figsize=(9, 3.5))
    ax_loss, ax_metric = fig.subplots(1, 2)
    epochs = [h["epoch"] for h in history]
    for key in ("train_loss", "val_loss"):
        ax_loss.plot(epochs, [h.get(key, np.nan) for h in history], marker="o", label=key)
    ax_loss.set_xlabel("epoch")
    ax_loss.set_title("loss")
    ax_loss.legend()
    ax_metric.plot(epochs, [h.get(f"val_{metric}", np.nan) for h in history], marker="o", color="C2")
    ax_metric.set_xlabel("epoch")
    ax_metric.set_title(f"validation {metric}")
    fig.tight_layout()
    return fig


def confusion_matrix(truth: np.ndarray, pred: np.ndarray, classes: Sequence[str]) -> Figure:
    """Counts of true (rows) against predicted (columns) classes."""
    n = len(classes)
    cm = np.zeros((n, n), dtype=np.int64)
    np.add.at(cm, (truth, pred), 1)
    size = min(4 + 0.35 * n, 16)
    fig = Figure(figsize=(size, size))
    ax = fig.subplots()
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(n), classes, rotation=90)
    ax.set_yticks(range(n), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    if n <= 20:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", color="white" if cm[i, j] > cm.max() / 2 else "black")
    ax.set_title("Confusion matrix")
    fig.tight_layout()
    return fig


def image_grid(images: Sequence[np.ndarray], titles: Sequence[str], suptitle: str) -> Figure:
    """HWC float images in [0, 1] on a grid with a title each."""
    n = max(len(images), 1)
    cols = min(3, n)
    rows = (n + cols - 1) // cols
    fig = Figure(figsize=(3 * cols, 3.2 * rows))
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for ax in axes:
        ax.axis("off")
    for ax, img, title in zip(axes, images, titles):
        ax.imshow(img)
        ax.set_title(title, fontsize=9)
    if not images:
        axes[0].text(0.5, 0.5, "no errors", ha="center", va="center")
    fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def predicted_vs_actual(actual: np.ndarray, predicted: np.ndarray) -> Figure:
    """Predicted ratings grouped by the actual rating."""
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    levels = np.unique(actual)
    ax.boxplot([predicted[actual == v] for v in levels], positions=levels, widths=0.3, manage_ticks=False)
    ax.plot([levels.min(), levels.max()], [levels.min(), levels.max()], "--", color="grey", label="ideal")
    ax.set_xlabel("actual rating")
    ax.set_ylabel("predicted rating")
    ax.set_title("Predicted vs actual (validation)")
    ax.legend()
    fig.tight_layout()
    return fig
