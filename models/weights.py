"""Loading weight files without unpickling arbitrary objects."""

from __future__ import annotations

from pathlib import Path

import torch


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    """Read a state dict from safetensors, or a torch file with ``weights_only=True``."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise TypeError(f"{path} does not hold a state dict")
    return state


def load_backbone(net: torch.nn.Module, weights: str | Path, arch: str) -> None:
    """Load a ResNet body into ``net`` from ``weights`` (``imagenet``, see :mod:`models.pretrained`, or a file); its head ``fc`` stays as built."""
    from models.pretrained import weights_file

    state = {k: v for k, v in load_weights(weights_file(str(weights), arch)).items() if not k.startswith("fc.")}
    missing, unexpected = net.load_state_dict(state, strict=False)
    if unexpected or [m for m in missing if not m.startswith("fc.")]:
        raise ValueError(f"{weights} does not fit {arch}: missing {missing[:5]}, unexpected {unexpected[:5]}")
