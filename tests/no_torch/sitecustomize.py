"""On ``PYTHONPATH``, makes PyTorch unimportable in a process and its children: the session's test server runs so."""

import sys

for _name in ("torch", "torchvision", "lightning"):
    sys.modules[_name] = None  # type: ignore[assignment]
