"""``unet_learner`` -> ``segment``: fastai's DynamicUnet, run again without its hooks and tensor attributes.

fastai's DynamicUnet keeps the encoder's skip outputs through forward hooks,
hands the input to later layers as an attribute of the tensors
(``SequentialEx``) and casts its output to ``TensorBase``: none of that
exports. :class:`ExportedUnet` calls the same modules with the same weights in
the same order, passing the skips and the input explicitly, and always resizes
where fastai resizes only when sizes differ (the same values either way).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F

from models.fastai_import import Unsupported
from models.fastai_import.converted import Converted, Probe
from models.fastai_import.vision import image_spec
from models.images import ImageSpec


class ExportedUnet(nn.Module):
    def __init__(self, unet: nn.Module) -> None:
        super().__init__()
        layers = list(unet.layers)
        self.encoder = layers[0]
        owner = {id(getattr(fn, "__self__", None)): i for i, child in enumerate(self.encoder) for fn in child._forward_hooks.values()}
        self.rest = nn.ModuleList(layers[1:])
        self.kinds: list[tuple[str, Any]] = []
        for layer in layers[1:]:
            name = type(layer).__name__
            if name == "UnetBlock":
                if id(layer.hook) not in owner:
                    raise Unsupported("a UnetBlock's skip connection is not hooked on the encoder's top-level layers")
                self.kinds.append(("block", owner[id(layer.hook)]))
            elif name == "ResizeToOrig":
                self.kinds.append(("resize", layer.mode))
            elif name == "MergeLayer":
                self.kinds.append(("merge", bool(layer.dense)))
            elif name == "ToTensorBase":
                self.kinds.append(("skip", None))
            else:
                self.kinds.append(("plain", None))
        self.keep = sorted({i for kind, i in self.kinds if kind == "block"})
        for child in self.encoder:
            child._forward_hooks.clear()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips: dict[int, torch.Tensor] = {}
        out = x
        for i, child in enumerate(self.encoder):
            out = child(out)
            if i in self.keep:
                skips[i] = out
        for (kind, arg), layer in zip(self.kinds, self.rest):
            if kind == "block":
                s = skips[arg]
                up = F.interpolate(layer.shuf(out), size=s.shape[-2:], mode="nearest")
                out = layer.conv2(layer.conv1(layer.relu(torch.cat([up, layer.bn(s)], dim=1))))
            elif kind == "resize":
                out = F.interpolate(out, size=x.shape[-2:], mode=arg)
            elif kind == "merge":
                out = torch.cat([out, x], dim=1) if arg else out + x
            elif kind == "plain":
                out = layer(out)
        return out


def probe_photos(folder: Path) -> list[Path]:
    rng = np.random.default_rng(4163)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (h, w) in enumerate([(96, 128), (75, 130), (120, 90)]):
        blocks = np.kron(rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3)), np.ones((8, 8, 1)))[:h, :w]
        paths.append(folder / f"probe-{i}.png")
        Image.fromarray(blocks.astype(np.uint8)).save(paths[-1])
    return paths


def convert(learn: Any, out: Path, data_dir: Path | None = None) -> Converted:
    if type(learn.model).__name__ != "DynamicUnet":
        raise Unsupported(f"a segment Learner is a unet_learner (DynamicUnet), not {type(learn.model).__name__}")
    spec = image_spec(learn)
    if spec["fit"] != "squish":
        raise Unsupported("Resize(method='crop') predicts for the photo's centre only, and the served mask covers the whole photo: export with method='squish'")
    codes = [t for t in learn.dls.after_item.fs if type(t).__name__ == "AddMaskCodes"]
    if not codes or codes[0].codes is None:
        raise Unsupported("the Learner's loaders carry no class codes (SegmentationDataLoaders(..., codes=...))")
    classes = [str(c) for c in codes[0].codes]
    spec.update(classes=classes, void=classes.index("Void") if "Void" in classes else None)
    image = ImageSpec.from_spec(spec)
    probes, inputs = [], []
    for path in probe_photos(out / "probes"):
        with Image.open(path) as photo:
            size = photo.size
            inputs.append(image.preprocess(photo))
        mask = np.asarray(learn.predict(path)[0], dtype=np.uint8)
        at_photo = np.asarray(Image.fromarray(mask).resize(size, Image.Resampling.NEAREST), dtype=np.uint8)
        np.save(out / "probes" / f"{path.stem}-mask.npy", at_photo)
        probes.append(Probe("segment", {"image": str(path.relative_to(out))}, {"mask": str((out / "probes" / f"{path.stem}-mask.npy").relative_to(out))}))
    net = ExportedUnet(copy.deepcopy(learn.model).eval().cpu()).eval()
    x = torch.from_numpy(np.stack(inputs))
    with torch.no_grad():
        theirs = learn.model.eval().cpu()(x)
        if not torch.allclose(net(x), torch.as_tensor(theirs), atol=1e-5):
            raise Unsupported("the DynamicUnet, run without its hooks, does not compute what fastai's does (a changed architecture?)")
    learner = {"model": "DynamicUnet", "loss": type(learn.loss_func).__name__, "item_tfms": str(learn.dls.after_item), "batch_tfms": str(learn.dls.after_batch)}
    return Converted(net, spec, (np.stack(inputs).astype(np.float32),), probes, learner)
