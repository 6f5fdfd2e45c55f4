"""What the ONNX exporter and importer share: the opsets export writes and the optional ``onnx`` import."""

from __future__ import annotations

__all__ = ["OPSETS", "require_onnx"]

OPSETS = range(13, 19)  # the opsets export writes; import reads any the onnx checker accepts


def require_onnx(what: str):
    """The ``onnx`` module, or an ImportError that says how to install it."""
    try:
        import onnx
    except ImportError as exc:
        raise ImportError(f"{what} needs the 'onnx' package, which corenet does not install by default: "
                          f"pip install 'corenet[onnx]' (or: pip install onnx)") from exc
    return onnx
