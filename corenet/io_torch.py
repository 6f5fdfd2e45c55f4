"""Former home of :func:`corenet.io.pytorch.load_torch_state_dict` (kept: docstrings show this path)."""

from .io.pytorch import load_torch_state_dict

__all__ = ["load_torch_state_dict"]
