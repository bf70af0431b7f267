"""Backbone weights for the image tasks: a local file, or torchvision's published ImageNet weights.

``weights: imagenet`` in a config fetches torchvision's ``IMAGENET1K_V1``
weights of the config's ResNet once, into ``ZOO_HOME/cache/weights/``, the
only download the platform makes at run time. The file is checked against the
hash torchvision publishes in its name (the first digits of its sha256, as
``torch.hub`` checks it) when it arrives and each time it is used, and read
with ``torch.load(weights_only=True)``. Offline, the error says in one line
which file to put where. Any other value is the path of a local file
(safetensors or a ``weights_only`` torch file).
"""

from __future__ import annotations

import re
import urllib.error
from pathlib import Path

from models.errors import DataProblem, GuardFailed
from models.onnx_model import sha256_file as sha256

IMAGENET = "imagenet"
HASH_IN_NAME = re.compile(r"-([a-f0-9]{8,})\.")
"""torchvision's file names end in ``-<first digits of the sha256>.pth`` (``torch.hub.HASH_REGEX``)."""


class WeightsUnavailable(DataProblem):
    """Published weights that could not be fetched (offline) and are not in the cache."""


class WeightsCorrupt(GuardFailed):
    """A weights file whose sha256 is not the one its publisher gives."""


def imagenet_url(arch: str) -> str:
    """torchvision's ImageNet (``IMAGENET1K_V1``) weights of ``arch``; a ValueError for an arch it publishes none for."""
    from torchvision.models import get_model_weights

    try:
        return str(get_model_weights(arch)["IMAGENET1K_V1"].url)
    except (KeyError, ValueError) as exc:
        raise ValueError(f"torchvision publishes no ImageNet weights for {arch!r}: use another arch or a local weights file") from exc


def imagenet_file(arch: str, cache: Path) -> Path:
    """The cached ImageNet weights of ``arch``, fetched the first time; checked against their published hash."""
    import torch

    url = imagenet_url(arch)
    name = url.rsplit("/", 1)[-1]
    match = HASH_IN_NAME.search(name)
    if match is None:
        raise ValueError(f"{url}: no hash in the file name to check it against")
    expected, path = match.group(1), cache / "weights" / name
    if path.is_file():
        if sha256(path).startswith(expected):
            return path
        raise WeightsCorrupt(f"{path}: its sha256 does not start with {expected} as published ({url}); delete it to fetch it again")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:  # torch.hub writes a temporary file beside ``path`` and moves it there only once the hash matched
        torch.hub.download_url_to_file(url, str(path), hash_prefix=expected, progress=True)
    except (urllib.error.URLError, OSError) as exc:
        raise WeightsUnavailable(f"cannot fetch {arch}'s ImageNet weights ({exc}); offline, download {url} elsewhere and put it at {path}") from None
    except RuntimeError as exc:  # torch.hub: "invalid hash value"
        raise WeightsCorrupt(f"{url}: {exc}") from None
    return path


def weights_file(value: str, arch: str) -> Path:
    """The file a config's ``weights`` names: ``imagenet`` (fetched into the cache) or a local path."""
    if value != IMAGENET:
        return Path(value)
    from models.settings import Settings

    return imagenet_file(arch, Settings.from_env().cache)
