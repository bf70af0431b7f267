"""Bringing a fastai Learner into the platform: ``zoo import fastai PATH --task TASK --trust-pickle``.

A Learner saved with ``learn.export()`` is a pickle, and reading a pickle runs
code (fastai issue 4163). Only :mod:`models.fastai_import.child` reads one, in
a process of its own that the import starts with no registry credentials in its
environment. It converts the Learner's model to ONNX, builds the task's spec
from what the Learner knows, and records fastai's own predictions on inputs it
makes. What it writes is then treated as untrusted data by the import
(:mod:`pipelines.fastai_import`): the ONNX model and the spec go through the
same checks as every version, and the served path (the task's serving hooks
on ONNX Runtime) must answer the probes as fastai did before anything is
registered. No serving or training path ever unpickles.
"""

from __future__ import annotations

CONVERTERS = {
    "classify": "models.fastai_import.vision",
    "recommend": "models.fastai_import.collab",
    "segment": "models.fastai_import.unet",
    "sentiment": "models.fastai_import.text",
    "sales": "models.fastai_import.tabular",
}
"""Task -> the module that converts its kind of Learner (``vision_learner``; ``collab_learner``'s dot-product model;
``unet_learner``; ``text_classifier_learner`` on AWD-LSTM; ``tabular_learner`` on the service's own sales features)."""

NOT_SUPPORTED = {
    "superres": "a unet_learner for super-resolution predicts an image, which the superres spec (luminance residuals) cannot describe",
}
"""Tasks whose Learners the import refuses, and why."""

PARITY_ATOL = 1e-3
"""How far the served answers may be from fastai's own (probabilities, ratings)."""


class Unsupported(ValueError):
    """The Learner is not of a kind (or configuration) the import can serve faithfully."""
