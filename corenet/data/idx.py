"""IDX files (MNIST, Fashion-MNIST, KMNIST): read, write and locate them.

Format (http://yann.lecun.com/exdb/mnist/, the official releases): a 4-byte big-endian magic number
``0x00 0x00 <type> <ndim>`` (type ``0x08`` = unsigned byte, so 2051 = images with 3 dimensions and
2049 = labels with 1 dimension), then ``ndim`` big-endian uint32 sizes, then the data in C order.
Files may be gzip-compressed (``.gz``, as distributed) or raw (as unpacked by many tools).
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from pathlib import Path

import numpy as np

# IDX type byte -> numpy dtype (big-endian for multi-byte types, as the format specifies)
_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_DTYPE_TO_IDX = {np.dtype(v.char): k for k, v in _IDX_DTYPES.items()}  # native-order dtype -> type byte

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049


_CHUNK = 1 << 20


def _read_upto(stream, n: int) -> bytearray:
    """At most ``n`` bytes of ``stream``, read in chunks (so a header promising a huge size allocates
    only what the stream really holds)."""
    buf = bytearray()
    while len(buf) < n:
        block = stream.read(min(n - len(buf), _CHUNK))
        if not block:
            break
        buf += block
    return buf


def read_idx(path, expected_magic: int | None = None) -> np.ndarray:
    """Read one IDX file into a numpy array.

    Parameters
    ----------
    path : str or os.PathLike
        The file, gzip-compressed or raw (detected from its first bytes, not its name).
    expected_magic : int, optional
        If given, the file's magic number must equal it (2051 for images, 2049 for labels).

    Returns
    -------
    numpy.ndarray
        Array of the shape stored in the header, in native byte order (``uint8`` for MNIST).

    Raises
    ------
    ValueError
        Naming the file: corrupt gzip, wrong magic number, unknown type, truncated data or
        trailing bytes.

    Notes
    -----
    The header says how many bytes follow it; no more than that (plus one byte, to tell that there
    is more) is ever read or decompressed, so a gzip bomb behind a small header is refused after
    reading what the header promised. Sizes are multiplied in Python integers, which never overflow.
    """
    path = Path(path)
    with open(path, "rb") as f:
        compressed = f.read(2) == b"\x1f\x8b"
        f.seek(0)
        if not compressed:
            return _parse_idx(path, f, expected_magic)
        try:
            with gzip.GzipFile(fileobj=f) as g:
                return _parse_idx(path, g, expected_magic)
        except (OSError, EOFError, zlib.error) as e:  # BadGzipFile is an OSError
            raise ValueError(f"{path}: corrupt or truncated gzip stream ({e})") from e


def _parse_idx(path: Path, stream, expected_magic) -> np.ndarray:
    head = _read_upto(stream, 4)
    if len(head) < 4:
        raise ValueError(f"{path}: file has {len(head)} bytes, too short for an IDX header")
    magic = int.from_bytes(head, "big")
    if expected_magic is not None and magic != expected_magic:
        raise ValueError(f"{path}: wrong magic number {magic} (expected {expected_magic}); not an IDX "
                         f"{'images' if expected_magic == IMAGES_MAGIC else 'labels'} file")
    if head[0] != 0 or head[1] != 0 or head[2] not in _IDX_DTYPES:
        raise ValueError(f"{path}: wrong magic number {magic} (0x{magic:08x}); not an IDX file")
    dtype, ndim = _IDX_DTYPES[head[2]], head[3]
    header = 4 + 4 * ndim
    dims = _read_upto(stream, 4 * ndim)
    if len(dims) < 4 * ndim:
        raise ValueError(f"{path}: truncated header ({4 + len(dims)} bytes, a {ndim}-D IDX header needs {header})")
    shape = tuple(int.from_bytes(dims[4 * i:4 * i + 4], "big") for i in range(ndim))
    count = math.prod(shape)  # exact
    expected = header + count * dtype.itemsize
    if count > np.iinfo(np.intp).max // dtype.itemsize:
        raise ValueError(f"{path}: header promises shape {shape} ({expected} bytes), more than an array can "
                         f"hold on this machine; the file is corrupt or not an IDX file")
    body = _read_upto(stream, expected - header + 1)  # one byte past the promise tells that there is more
    if len(body) < expected - header:
        raise ValueError(f"{path}: truncated: header promises shape {shape} ({expected} bytes) but the file "
                         f"holds {header + len(body)} bytes")
    if len(body) > expected - header:
        raise ValueError(f"{path}: unexpected trailing bytes after shape {shape}: the data goes on past the "
                         f"{expected} bytes the header promises (reading stopped there)")
    arr = np.frombuffer(body, dtype=dtype, count=count).reshape(shape)
    return arr.astype(dtype.newbyteorder("="), copy=True)


def write_idx(path, array, compress: bool | None = None) -> Path:
    """Write an array as an IDX file (the inverse of :func:`read_idx`).

    Parameters
    ----------
    path : str or os.PathLike
        Destination. Compressed with gzip if ``compress`` is true, or if it is None and the name
        ends in ``.gz``.
    array : array_like
        Data of dtype uint8, int8, int16, int32, float32 or float64, at most 255 dimensions.
    compress : bool, optional
        Force or forbid gzip compression.

    Returns
    -------
    pathlib.Path
        The path written. Gzip output is byte-for-byte reproducible (mtime 0, no file name).
    """
    path = Path(path)
    array = np.ascontiguousarray(array)
    if array.dtype not in _DTYPE_TO_IDX:
        raise ValueError(f"write_idx: dtype {array.dtype} has no IDX type code; expected one of "
                         f"{sorted(str(d) for d in _DTYPE_TO_IDX)}")
    code = _DTYPE_TO_IDX[array.dtype]
    header = bytes([0, 0, code, array.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in array.shape)
    payload = header + array.astype(_IDX_DTYPES[code], copy=False).tobytes()
    if compress is None:
        compress = path.suffix == ".gz"
    with open(path, "wb") as f:
        if compress:
            with gzip.GzipFile(filename="", mode="wb", fileobj=f, compresslevel=9, mtime=0) as g:
                g.write(payload)
        else:
            f.write(payload)
    return path


def find_file(name: str, dirs) -> Path:
    """Locate a data file, gzip-compressed or unpacked, in the first directory that has it.

    Parameters
    ----------
    name : str
        File name as distributed, e.g. ``"train-images-idx3-ubyte.gz"``; the unpacked name without
        ``.gz`` is accepted too.
    dirs : sequence of pathlib.Path
        Directories to search, in order.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    FileNotFoundError
        Listing every path searched.
    """
    base = name[:-3] if name.endswith(".gz") else name
    tried = []
    for d in dirs:
        for candidate in (Path(d) / (base + ".gz"), Path(d) / base):
            tried.append(str(candidate))
            if candidate.is_file():
                return candidate
    raise FileNotFoundError(f"{base}(.gz) not found; searched: {', '.join(tried)}")


def read_idx_pair(images_path, labels_path) -> tuple[np.ndarray, np.ndarray]:
    """Read an images file and its labels file and check that they agree.

    Parameters
    ----------
    images_path, labels_path : str or os.PathLike
        IDX files with magic 2051 (N, rows, cols) and 2049 (N,).

    Returns
    -------
    images : numpy.ndarray
        uint8, shape (N, 1, rows, cols).
    labels : numpy.ndarray
        int64, shape (N,).
    """
    images = read_idx(images_path, IMAGES_MAGIC)
    labels = read_idx(labels_path, LABELS_MAGIC)
    if images.ndim != 3:
        raise ValueError(f"{images_path}: expected images of shape (N, rows, cols), got {images.shape}")
    if labels.ndim != 1:
        raise ValueError(f"{labels_path}: expected labels of shape (N,), got {labels.shape}")
    if len(images) != len(labels):
        raise ValueError(f"count mismatch: {os.fspath(images_path)} holds {len(images)} images but "
                         f"{os.fspath(labels_path)} holds {len(labels)} labels")
    return images[:, None], labels.astype(np.int64)
