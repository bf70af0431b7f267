"""One module per course task; see :mod:`models.registry`."""
