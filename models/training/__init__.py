"""Training with Lightning: the loop (:mod:`models.training.loop`) and the per-run recipe (:mod:`models.training.recipe`).

Imports PyTorch and Lightning; nothing in serving imports this package.
"""
